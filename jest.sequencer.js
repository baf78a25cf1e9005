// The order of the suites across Jest's workers. Without timings from an earlier run (a fresh
// clone, CI), Jest's default starts the largest files first, which leaves the fault suites (small
// files, minutes each) for last, one after the other on a single worker. They go first here, the
// longest first; everything else keeps Jest's order (earlier timings, else file size).
const Sequencer = require('@jest/test-sequencer').default;

/** Suites known to take minutes, longest first. */
const SLOW = [
  /tests\/fault\/src\/nats-faults\./,
  /tests\/fault\/src\/redis-faults\./,
  /tests\/fault\/src\/cluster-faults\./,
];

const rank = (path) => {
  const i = SLOW.findIndex((pattern) => pattern.test(path));
  return i < 0 ? SLOW.length : i;
};

class SlowFirstSequencer extends Sequencer {
  sort(tests) {
    const ordered = super.sort(tests);
    // Array.prototype.sort is stable: the rest keep the default order.
    return [...ordered].sort((a, b) => rank(a.path) - rank(b.path));
  }
}

module.exports = SlowFirstSequencer;
