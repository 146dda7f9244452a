import * as fs from "fs";
import * as path from "path";

/**
 * Reads a config file under services/ and fills its {{placeholders}}. The files stay real config
 * files a reader can open; a placeholder without a value is an error, never an empty string.
 */
export function renderTemplate(file: string, values: Record<string, string | number>): string {
    const text = fs.readFileSync(path.join(__dirname, file), "utf8");
    return text.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, key: string) => {
        if (!(key in values)) throw new Error(`services/${file}: no value for {{${key}}}`);
        return String(values[key]);
    });
}

/** The systemd confinement our own services share (services/base/confined.conf), with the capabilities this one keeps. */
export const confined = (...capabilities: string[]): string =>
    renderTemplate("base/confined.conf", { capabilities: capabilities.join(" ") }).trimEnd();
