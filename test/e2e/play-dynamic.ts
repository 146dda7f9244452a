/**
 * Runs a program's dynamic resources the way Pulumi's dynamic-provider host does: in a process of its
 * own, from the serialized provider each resource carries in `__provider`, configured from the
 * stack's config — check, create, then a refresh (read) and the diff a later preview would make.
 *
 * stdin: { config: {key: value}, resources: [{ name, inputs, delete? }] }; stdout: one JSON line per resource.
 * `delete`: the resource left the program; the engine deletes it with the state its create returned.
 */
import * as fs from "fs";
// eslint-disable-next-line @typescript-eslint/no-var-requires
const requireFromString: (code: string) => { handler: () => any } = require("require-from-string");

async function main(): Promise<void> {
    const { config, resources } = JSON.parse(fs.readFileSync(0, "utf8"));
    const get = (k: string) => config[k];
    for (const r of resources as { name: string; inputs: Record<string, any>; delete?: boolean }[]) {
        const { __provider, ...inputs } = r.inputs;
        const provider = requireFromString(__provider).handler();
        await provider.configure?.({ config: { get, require: get } });
        const checked = await provider.check({}, inputs);
        if (checked.failures?.length) throw new Error(`${r.name}: ${JSON.stringify(checked.failures)}`);
        if (r.delete) {
            await provider.delete("", checked.inputs);
            console.log(JSON.stringify({ name: r.name, deleted: true }));
            continue;
        }
        const created = await provider.create(checked.inputs);
        const read = await provider.read(created.id, created.outs);
        const diff = await provider.diff(created.id, read.props, inputs);
        console.log(JSON.stringify({ name: r.name, id: created.id, refreshed: read.id === created.id, changesAfterRefresh: diff.changes, outs: created.outs }));
    }
}

main().catch(e => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
