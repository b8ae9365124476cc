// Turns a sequential editing trace into concurrent sessions: PERSONS people
// take turns of TURN consecutive edits each, every person with a Yjs
// document of their own, who sees every earlier turn before typing.
//   node sessions.mjs TRACE.json.gz OUT.bin PERSONS TURN [LIMIT]
// OUT.bin holds, per update in the order typed, one byte (the person), a
// 4-byte little-endian length, then the update.
import * as Y from 'yjs'
import { readFileSync, writeFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'

const [trace, out, personsArg, turnArg, limitArg] = process.argv.slice(2)
const data = JSON.parse(gunzipSync(readFileSync(trace)).toString('utf8'))
const persons = Number(personsArg)
const turn = Number(turnArg)
const limit = limitArg ? Number(limitArg) : Infinity
const docs = []
for (let p = 0; p < persons; p++) {
  const doc = new Y.Doc()
  doc.clientID = 0x4d455300 + p // fixed, so that runs are comparable
  docs.push(doc)
}
const chunks = []
let total = 0
let author = 0
let pending = [] // this turn's updates, applied to the others when it ends
for (const [p, doc] of docs.entries()) {
  doc.on('update', (update, origin) => {
    if (origin === 'remote') return
    const head = Buffer.alloc(5)
    head.writeUInt8(p, 0)
    head.writeUInt32LE(update.length, 1)
    chunks.push(head, Buffer.from(update))
    total += 5 + update.length
    pending.push(update)
  })
}
const endTurn = () => {
  for (const [p, doc] of docs.entries()) {
    if (p === author) continue
    for (const update of pending) Y.applyUpdate(doc, update, 'remote')
  }
  pending = []
  author = (author + 1) % persons
}
let edits = 0
// Trace positions count code points, Yjs counts UTF-16 units: the two agree
// on the traces used here (BMP text); the caller checks the final text.
outer: for (const txn of data.txns) {
  for (const [pos, del, ins] of txn.patches) {
    if (edits >= limit) break outer
    const text = docs[author].getText('content')
    docs[author].transact(() => {
      if (del > 0) text.delete(pos, del)
      if (ins) text.insert(pos, ins)
    })
    edits++
    if (edits % turn === 0) endTurn()
  }
}
endTurn()
writeFileSync(out, Buffer.concat(chunks, total))
process.stdout.write(JSON.stringify({ edits, text: docs[0].getText('content').toString() }))
