/**
 * `npm run bench`: how long the program takes to evaluate under mocks (what `pulumi preview` costs
 * before any provider call). Prints a table; it is a measurement, not a test.
 */
import { runProgram } from "./program";
import { baseConfig } from "./fixtures";

async function main(): Promise<void> {
    const runs = 7;
    const times: number[] = [];
    let resources = 0;
    for (let i = 0; i < runs; i++) {
        const start = process.hrtime.bigint();
        const run = await runProgram(baseConfig());
        times.push(Number(process.hrtime.bigint() - start) / 1e6);
        resources = run.resources.length;
    }
    const warm = times.slice(1).sort((a, b) => a - b);
    const median = warm[Math.floor(warm.length / 2)];
    const goal = 2000;
    table("program evaluation under mocks", [
        ["resources declared", String(resources)],
        ["first run (cold, loads the SDKs), ms", times[0].toFixed(0)],
        [`warm median of ${runs - 1} runs, ms`, median.toFixed(0)],
        ["goal, ms", String(goal)],
        ["cold run / goal", (times[0] / goal).toFixed(2)],
    ]);
}

export function table(title: string, rows: [string, string][]): void {
    const width = Math.max(...rows.map(r => r[0].length));
    console.log(`\n${title}`);
    console.log(`| ${"measure".padEnd(width)} | value |`);
    console.log(`|${"-".repeat(width + 2)}|-------|`);
    for (const [k, v] of rows) console.log(`| ${k.padEnd(width)} | ${v} |`);
}

main().catch(e => { console.error(e); process.exit(1); });
