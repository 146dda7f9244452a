/** What a check finds, and the report: grouped by area, a fix for everything that is not ok. */
export type Status = "ok" | "warn" | "error";

export interface Finding {
    readonly area: string;
    readonly name: string;
    readonly status: Status;
    readonly detail: string;
    /** How to fix it (empty when ok). */
    readonly hint: string;
}

export const finding = (area: string, name: string, status: Status, detail: string, hint = ""): Finding =>
    ({ area, name, status, detail, hint: status === "ok" ? "" : hint });

export function render(findings: readonly Finding[]): string {
    const lines: string[] = [];
    const width = Math.max(...findings.map(f => f.name.length));
    for (const area of [...new Set(findings.map(f => f.area))]) {
        lines.push(area);
        for (const f of findings.filter(x => x.area === area)) {
            lines.push(`  ${f.status.padEnd(5)} ${f.name.padEnd(width)}  ${f.detail}`);
            if (f.hint) lines.push(`        ${"".padEnd(width)}  fix: ${f.hint}`);
        }
    }
    const count = (s: Status) => findings.filter(f => f.status === s).length;
    lines.push(`check: ${count("ok")} ok, ${count("warn")} warn, ${count("error")} error`);
    return lines.join("\n");
}
