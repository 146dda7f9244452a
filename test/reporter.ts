/** Mocha's spec reporter plus one plain closing line ("N passed, N failed") that CI can read. */
import * as Mocha from "mocha";

class SpecWithSummary extends Mocha.reporters.Spec {
    constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
        super(runner, options);
        runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
            const s = runner.stats!;
            process.stdout.write(`\nunit: ${s.passes} passed, ${s.failures} failed${s.pending ? `, ${s.pending} skipped` : ""}\n`);
        });
    }
}

export = SpecWithSummary;
