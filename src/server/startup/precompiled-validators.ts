// The request validators compiled at build time; none when running from source (`npm run build` bundles the generated ones in place of this module).
import type { PrecompiledValidators } from './validators.js';

export const precompiledValidators: PrecompiledValidators | null = null;
