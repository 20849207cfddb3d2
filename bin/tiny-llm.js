#!/usr/bin/env node
// Entry point of the `tiny-llm` command: runs the compiled CLI in dist/ (built by `npm ci` through `prepare`).
import '../dist/cli/main.js';
