// peers.mjs — load the npm test peers (nostr-tools, @nostr-dev-kit/sync).
//
// ES modules ignore NODE_PATH, and under distcheck the test scripts are not
// next to tests/js/node_modules: look in NODE_PATH (set by tests/lib.sh),
// then next to this file. subpath is a package export such as './pure'.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export async function importPeer(name, subpath = '.') {
    const dirs = (process.env.NODE_PATH || '').split(':').filter(Boolean);
    dirs.push(fileURLToPath(new URL('./node_modules', import.meta.url)));
    for (const dir of dirs) {
        const pkg = join(dir, name);
        if (!existsSync(join(pkg, 'package.json'))) continue;
        const meta = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'));
        let entry = meta.exports?.[subpath]?.import ?? meta.exports?.[subpath];
        if (subpath === '.') entry = entry ?? meta.module ?? meta.main;
        if (typeof entry === 'object') entry = entry.default;
        if (typeof entry !== 'string') throw new Error(`${name}: no ES module entry for '${subpath}'`);
        return import(pathToFileURL(join(pkg, entry)).href);
    }
    throw new Error(`npm package ${name} not found in ${dirs.join(', ')} (npm install in tests/js)`);
}
