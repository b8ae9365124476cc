// Encodes an editing trace as Yjs updates, one per edit, the way a browser
// typing it would send them: node encode.mjs TRACE.json.gz OUT.bin [LIMIT]
// OUT.bin holds, per update, a 4-byte little-endian length then the bytes.
import * as Y from 'yjs'
import { readFileSync, writeFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'

const [trace, out, limitArg] = process.argv.slice(2)
const data = JSON.parse(gunzipSync(readFileSync(trace)).toString('utf8'))
const limit = limitArg ? Number(limitArg) : Infinity
const doc = new Y.Doc()
doc.clientID = 0x4d455348 // fixed, so that runs are comparable
const text = doc.getText('content')
const chunks = []
let total = 0
doc.on('update', (update) => {
  const head = Buffer.alloc(4)
  head.writeUInt32LE(update.length)
  chunks.push(head, Buffer.from(update))
  total += 4 + update.length
})
let edits = 0
// Trace positions count code points, Yjs counts UTF-16 units: the two agree
// on the traces used here (BMP text); bench/run.py checks the final text.
outer: for (const txn of data.txns) {
  for (const [pos, del, ins] of txn.patches) {
    if (edits >= limit) break outer
    doc.transact(() => {
      if (del > 0) text.delete(pos, del)
      if (ins) text.insert(pos, ins)
    })
    edits++
  }
}
writeFileSync(out, Buffer.concat(chunks, total))
process.stdout.write(JSON.stringify({ edits, text: text.toString() }))
