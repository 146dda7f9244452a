/** A small reporter: named checks, each passes or fails with a reason; the summary line counts them. */
export class Checks {
    passed = 0;
    failed: string[] = [];

    /** Records a check; `probe` returns nothing when it passes, or says what is wrong. */
    check(name: string, probe: () => string | undefined | void): void {
        let problem: string | undefined | void;
        try { problem = probe(); } catch (e) { problem = String(e); }
        if (problem) {
            this.failed.push(name);
            console.log(`  FAIL ${name}\n       ${problem.trim().split("\n").join("\n       ")}`);
        } else {
            this.passed++;
            console.log(`  ok   ${name}`);
        }
    }

    summary(): string {
        return `e2e: ${this.passed} passed, ${this.failed.length} failed`;
    }
}
