// The Dockerfile as the stand-in build sees it: each FROM's digest pin removed, the rest byte for byte the same.
// Stand-ins are built here from Debian's and npm's packages, so they can carry the upstream tag but never the
// upstream digest; the pin itself is checked statically (test/delivery/dockerfile.test.ts).

export type BasePin = { image: string; digest: string };

const pinnedFrom = /^(FROM\s+(?:--platform=\S+\s+)?)(\S+?)@(sha256:[0-9a-f]{64})(?=\s|$)/gim;

/** Returns the Dockerfile with `FROM name:tag@sha256:…` turned into `FROM name:tag`, and the pins it removed. */
export function dockerfileForStandins(text: string): { text: string; pins: BasePin[] } {
  const pins: BasePin[] = [];
  const out = text.replace(pinnedFrom, (_match, from: string, image: string, digest: string) => {
    pins.push({ image, digest });
    return `${from}${image}`;
  });
  return { text: out, pins };
}
