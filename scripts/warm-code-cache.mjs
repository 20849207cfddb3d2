// Writes V8's code cache of the CLI's bundle (dist/cli/cli.cjs.cache) after the server's start-up has run in it once: `npm run build` runs it, and the image's build again with the image's own Node (a cache is only taken by the Node that wrote it).
import { loadCli } from '../dist/cli/launch.js';

const { cli, bundle } = loadCli();
await cli.warmUp();
// Written even over a current cache: this run compiled the start-up's code, whatever wrote that one.
console.log(`code cache ${bundle.cache}; ${await bundle.save(true)}`);
