/**
 * How a conformance suite is registered (restic's `suite.go` in Deno terms): a backend gives a
 * name, maybe a reason why it cannot run here, and a factory of fresh fixtures; every case runs
 * as its own test on a fresh fixture, which is then closed, with Deno's resource and op checks
 * on. A skipped backend's tests show as ignored, and the reason is printed once.
 *
 * @module
 */

/** A backend under test. */
export interface Backend<F> {
  name: string;
  /** Why the backend cannot run here (its cases are then ignored, with this reason). */
  skip?: string;
  fresh(): Promise<F>;
}

/** Registers `cases` for `backend` as tests named `SUITE BACKEND: CASE`. */
export function registerSuite<F>(
  suite: string,
  backend: Backend<F>,
  cases: Record<string, (f: F) => Promise<void>>,
  close: (f: F) => Promise<void>,
): void {
  for (const [name, run] of Object.entries(cases)) {
    Deno.test({
      name: `${suite} ${backend.name}: ${name}`,
      ignore: backend.skip !== undefined,
      sanitizeResources: true,
      sanitizeOps: true,
      fn: async () => {
        const f = await backend.fresh();
        try {
          await run(f);
        } finally {
          await close(f);
        }
      },
    });
  }
  if (backend.skip !== undefined) {
    console.log(`${suite} ${backend.name}: skipped (${backend.skip})`);
  }
}
