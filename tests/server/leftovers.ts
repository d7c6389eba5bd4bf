/**
 * What a local store's directory still holds of an account, counted behind the store's back (the
 * chunk-store suite's check that `deleteAccount` leaves nothing).
 *
 * @module
 */

import { join, relative, sep } from "node:path";
import { DatabaseSync } from "node:sqlite";

/**
 * What `dir` holds of `account`, counted directly: files below a folder named after it, and rows
 * of it in every SQLite table with an `account` column.
 */
export async function localLeftovers(dir: string, account: string): Promise<number> {
  let n = 0;
  const walk = async (d: string): Promise<void> => {
    for await (const e of Deno.readDir(d)) {
      const path = join(d, e.name);
      if (e.isDirectory) await walk(path);
      else if (relative(dir, path).split(sep).slice(0, -1).includes(account)) n++;
      else if (e.name.endsWith(".db")) {
        const db = new DatabaseSync(path, { readOnly: true });
        try {
          const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .all() as {
              name: string;
            }[];
          for (const { name } of tables) {
            const cols = db.prepare(`PRAGMA table_info(${name})`).all() as { name: string }[];
            if (!cols.some((c) => c.name === "account")) continue;
            n += Number(
              (db.prepare(`SELECT COUNT(*) AS n FROM ${name} WHERE account = ?`).get(account) as {
                n: number;
              }).n,
            );
          }
        } finally {
          db.close();
        }
      }
    }
  };
  await walk(dir);
  return n;
}
