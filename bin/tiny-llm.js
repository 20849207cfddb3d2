#!/usr/bin/env node
// Entry point of the `tiny-llm` command: runs the CLI that `npm run build` bundled into dist/cli/ (built by `npm ci` through `prepare`).
import { runCli } from '../dist/cli/launch.js';

runCli();
