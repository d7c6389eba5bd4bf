/**
 * choosePass: a change waiting when the full pass falls due goes first, once; asked-for full
 * passes are never put off.
 *
 * @module
 */

import assert from "node:assert/strict";
import { choosePass } from "../../lib/core/pass_choice.ts";

Deno.test("choosePass: the table", () => {
  const rows: [Parameters<typeof choosePass>[0], ReturnType<typeof choosePass>][] = [
    // nothing due: the changes' pass
    [{ due: false, asked: false, changed: 3, pushed: false, deferred: false }, {
      full: false,
      deferred: false,
      again: false,
    }],
    // due, a change waits: the change first, the full pass at once after it
    [{ due: true, asked: false, changed: 1, pushed: false, deferred: false }, {
      full: false,
      deferred: true,
      again: true,
    }],
    // ... and then the full pass, even if another change came meanwhile
    [{ due: true, asked: false, changed: 1, pushed: false, deferred: true }, {
      full: true,
      deferred: false,
      again: false,
    }],
    // due, nothing changed: the full pass
    [{ due: true, asked: false, changed: 0, pushed: false, deferred: false }, {
      full: true,
      deferred: false,
      again: false,
    }],
    // a push waits (nothing local changed): its pass first too
    [{ due: true, asked: false, changed: 0, pushed: true, deferred: false }, {
      full: false,
      deferred: true,
      again: true,
    }],
    // asked for: full, whatever waits
    [{ due: true, asked: true, changed: 5, pushed: false, deferred: false }, {
      full: true,
      deferred: false,
      again: false,
    }],
    [{ due: false, asked: true, changed: 5, pushed: false, deferred: false }, {
      full: true,
      deferred: false,
      again: false,
    }],
    // a deferral outlives passes that were not due yet
    [{ due: false, asked: false, changed: 2, pushed: false, deferred: true }, {
      full: false,
      deferred: true,
      again: false,
    }],
  ];
  for (const [state, want] of rows) {
    assert.deepEqual(choosePass(state), want, JSON.stringify(state));
  }
});

Deno.test("choosePass: a stream of changes puts the due full pass off only once", () => {
  let deferred = false;
  const kinds: boolean[] = [];
  for (let i = 0; i < 4; i++) {
    const c = choosePass({ due: true, asked: false, changed: 1, pushed: false, deferred });
    deferred = c.deferred;
    kinds.push(c.full);
    if (c.full) break;
  }
  assert.deepEqual(kinds, [false, true]);
});
