import { DatabaseSync } from "node:sqlite";
const db = new DatabaseSync(":memory:");
console.log(db.prepare(`SELECT json_extract(j.value,'$.hash') AS h FROM json_each('[{"hash":"ab","size":1}]') j`).all());
