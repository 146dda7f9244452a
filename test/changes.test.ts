import { strict as assert } from "assert";
import * as fs from "fs";
import * as path from "path";
import { outcomes, labels, table, Outcome } from "./changes";
import { ROOT } from "./program";

describe("what a change does on the real providers (the change matrix)", () => {
    let all: Outcome[];
    before(async function () {
        this.timeout(300_000);
        all = await outcomes();
    });

    it("replaces, hands over and refuses exactly as each row expects", () => {
        for (const { change, plan, before: b, after: a } of all) {
            assert.deepEqual(labels(plan, "replace", b, a), [...change.expect.replaced].sort(), `${change.what}: replaced`);
            assert.equal(plan.handover, change.expect.handover, `${change.what}: handover`);
            assert.equal(plan.refused.length > 0, Boolean(change.expect.refused), `${change.what}: refused ${plan.refused}`);
        }
    });

    it("never has two live resources with one Hetzner-unique name (create-before-delete)", () => {
        for (const { change, plan } of all) assert.deepEqual(plan.clashes, [], change.what);
    });

    it("the server is never replaced by access or identity changes (sshPort included), only by image and location", () => {
        const replacing = all.filter(o => labels(o.plan, "replace", o.before, o.after).includes("server")).map(o => o.change.what);
        assert.deepEqual(replacing, ["image", "location, protectData on", "location, protectData off (the move)"]);
    });

    it("is the table README shows", () => {
        const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
        assert.ok(readme.includes(table(all)), "README's change table is out of date: paste the output of `npm run changes`");
    });
});
