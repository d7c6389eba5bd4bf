/**
 * End to end: a git repository worked on from two devices at once stays valid. Commits made on
 * both at the same moment, and `git status` running on one while the other commits, never leave
 * a conflict copy where git would read it (they go to `.git/cloudsync-conflicts/`), and
 * `git fsck` passes on both devices afterwards.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Proc, ServerProc, startClient, tempDir, tree, waitConverged } from "./harness.ts";

const opts = { sanitizeResources: true, sanitizeOps: true };

async function git(repo: string, ...args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command("git", {
    args: ["-c", "user.name=T", "-c", "user.email=t@example.invalid", "-C", repo, ...args],
    env: { GIT_CONFIG_NOSYSTEM: "1", HOME: repo },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

const hasGit = await new Deno.Command("git", { args: ["--version"] }).output().then(
  (r) => r.success,
  () => false,
);

Deno.test({
  name: "a git repository committed to on two devices at once stays valid (git fsck)",
  ...opts,
  ignore: !hasGit,
  async fn() {
    await using tmp = await tempDir();
    const a = join(tmp.path, "a");
    const b = join(tmp.path, "b");
    const [ra, rb] = [join(a, "repo"), join(b, "repo")];
    await Deno.mkdir(ra, { recursive: true });
    assert.equal((await git(ra, "init", "-q", "-b", "main")).code, 0);
    await Deno.writeTextFile(join(ra, "readme.txt"), "hello\n");
    assert.equal((await git(ra, "add", ".")).code, 0);
    assert.equal((await git(ra, "commit", "-q", "-m", "first")).code, 0);
    const server = await ServerProc.start(join(tmp.path, "data"));
    const env = { CLOUDSYNC_DEBUG: "1" };
    const ca = startClient("A", server.port, a, { env, seconds: 5 });
    const serial = (await ca.waitForLine(/^Serial code: ([0-9A-Z-]+)$/))[1]!;
    const cb = startClient("B", server.port, b, { serial, env, seconds: 5 });
    const procs: Proc[] = [server, ca, cb];
    const dump = () => procs.map((p) => `--- ${p.name}:\n${p.output()}`).join("\n");
    try {
      await waitConverged([a, b], 30_000, procs);
      for (let round = 0; round < 3; round++) {
        // Both commit the same branch at the same moment.
        await Deno.writeTextFile(join(ra, `from-a-${round}.txt`), `a ${round}\n`);
        await Deno.writeTextFile(join(rb, `from-b-${round}.txt`), `b ${round}\n`);
        const both = await Promise.all([
          git(ra, "add", ".").then(() => git(ra, "commit", "-q", "-m", `A ${round}`)),
          git(rb, "add", ".").then(() => git(rb, "commit", "-q", "-m", `B ${round}`)),
        ]);
        for (const r of both) assert.equal(r.code, 0, r.out);
        await waitConverged([a, b], 30_000, procs);
      }
      // git status on B (it rewrites .git/index) while A commits.
      for (let i = 0; i < 5; i++) {
        await Deno.writeTextFile(join(ra, `more-${i}.txt`), `${i}\n`);
        await Promise.all([
          git(ra, "add", ".").then(() => git(ra, "commit", "-q", "-m", `more ${i}`)),
          git(rb, "status", "--short"),
        ]);
      }
      await waitConverged([a, b], 30_000, procs);
      for (const repo of [ra, rb]) {
        const fsck = await git(repo, "fsck");
        assert.equal(fsck.code, 0, `git fsck in ${repo}:\n${fsck.out}\n${dump()}`);
        assert.equal((await git(repo, "status", "--short")).code, 0);
        assert.equal((await git(repo, "log", "--oneline")).code, 0);
      }
      // Conflict copies of git's own files are only in .git/cloudsync-conflicts/.
      const stray = [...(await tree(a)).keys()].filter((p) =>
        /\(conflict from/.test(p) && p.includes(".git/") && !p.includes(".git/cloudsync-conflicts/")
      );
      assert.deepEqual(stray, []);
    } finally {
      for (const p of procs.reverse()) await p.stop();
    }
  },
});
