// The Meshpad editor: CodeMirror 6 bound to a Yjs document that this page
// keeps in the browser (and in IndexedDB), synchronised with this machine's
// peer over the y-websocket protocol at /ws/{key}@{space}?key=1. The key is
// the document's for good within its space; its name may change while the
// page is open (see life.js), so the connection, and this browser's copy, go
// by the key and the space (two spaces may hold the same key).
//
// A reader's editor (and a removed member's) is read-only from the start:
// the text cannot be changed, the controls that change the document are
// hidden, and the bar says why. Its cursor and the others' still show.
//
// "Saved" means the peer has written every edit of this page to disk: the
// peer acknowledges frames with message 100 (see crdt/ywire.py), counting the
// frames this page sent on the current connection.
import {
  Y, WebsocketProvider, IndexeddbPersistence, yCollab, yUndoManagerKeymap, decoding,
  EditorView, EditorState, keymap, drawSelection, dropCursor, highlightActiveLine,
  highlightActiveLineGutter, highlightSpecialChars, lineNumbers, rectangularSelection,
  defaultKeymap, indentWithTab, bracketMatching, indentOnInput, searchKeymap, highlightSelectionMatches,
  search, Compartment
} from 'meshpad-vendor'
import { setupHistory, authorColours } from 'meshpad-history'
import { setupLife, CLOSE_DELETED, refPath } from 'meshpad-life'

const CLOSE_ROLE = 4403 // server/spaces.py
import { markdownEditing } from 'meshpad-markdown-commands'
import { setupPreview } from 'meshpad-preview'

const MESSAGE_SAVED = 100
const MESSAGE_QUERY_AWARENESS = 3
// The peer closes with this code a connection whose change would make the
// document too large (crdt/ywire.py); the reason says by how much.
const CLOSE_TOO_LARGE = 4413
// A peer that has answered nothing this long after we sent it a frame is
// "not responding" (frozen, or its machine asleep): say so instead of
// "saving…". After this much silence the page asks it for a sign of life.
const PEER_SILENT_MS = 3000
const PROBE_AFTER_MS = 5000
const root = document.getElementById('editor')
const key = root.dataset.key
// The space: its id where the page was given it (it outlives a rename of
// the space), else the name the peer gave it.
const space = root.dataset.spaceId || root.dataset.space
const readOnlyFromStart = root.dataset.readOnly === 'true'
const maxDocumentBytes = Number(root.dataset.maxDocumentBytes)
const maxFrameBytes = Number(root.dataset.maxFrameBytes)
const statusEl = document.getElementById('status')
const savedEl = document.getElementById('saved')
const peopleEl = document.getElementById('people')
const problemEl = document.getElementById('problem')

// -- who am I ----------------------------------------------------------------
// Dark enough for white names on them (contrast 4.5:1 at least).
const PALETTE = ['#c0262d', '#1f7a35', '#3451c6', '#b04a0c', '#7e22ce', '#0f766e', '#be185d', '#7a4f0b']

// Black or white, whichever reads better on a person's colour (a colour
// picked by hand may be light).
function textOn (color) {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})/i.exec(color || '')
  if (!m) return '#fff'
  const [r, g, b] = m.slice(1).map(h => {
    const c = parseInt(h, 16) / 255
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4
  })
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
  return (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) ? '#000' : '#fff'
}
function rgbToHex (rgb) {
  const m = /rgba?\((\d+),\s*(\d+),\s*(\d+)/.exec(rgb || '')
  return m ? '#' + m.slice(1, 4).map(n => Number(n).toString(16).padStart(2, '0')).join('') : rgb
}
function loadUser () {
  let user = null
  try { user = JSON.parse(localStorage.getItem('meshpad:user')) } catch (_) { user = null }
  if (!user || typeof user.name !== 'string' || !/^#[0-9a-f]{6}$/i.test(user.color || '')) {
    user = { name: 'Guest ' + Math.floor(Math.random() * 1000), color: PALETTE[Math.floor(Math.random() * PALETTE.length)] }
    localStorage.setItem('meshpad:user', JSON.stringify(user))
  }
  return user
}
const user = loadUser()

// -- the document ---------------------------------------------------------------
const ydoc = new Y.Doc()
const ytext = ydoc.getText('content')
// This browser's copy, in IndexedDB: "meshpad:HOST:KEY" for the peer's first
// space (as before spaces, so nothing kept is lost), "meshpad:HOST:SPACEID:KEY"
// for the others. Made once the space's id is known.
let local = null
storeName().then(name => {
  if (name !== null) {
    local = new IndexeddbPersistence(name, ydoc)
    window.meshpad.local = local
  }
})

async function storeName () {
  const base = 'meshpad:' + location.host + ':'
  if (root.dataset.firstSpace === 'true' || root.dataset.spacesCount === '1') return base + key
  if (root.dataset.spaceId && root.dataset.firstSpace === 'false') return base + root.dataset.spaceId + ':' + key
  // Not said by the page: the peer's list of spaces says (its first is the first).
  for (let attempt = 0; ; attempt++) {
    try {
      const resp = await fetch('/api/spaces', { cache: 'no-store' })
      if (!resp.ok) throw new Error('HTTP ' + resp.status)
      const spaces = await resp.json()
      const index = spaces.findIndex(s => s.id === root.dataset.spaceId || s.name === root.dataset.space)
      if (index < 0) return null // this page's space is gone: keep nothing
      return index === 0 ? base + key : base + spaces[index].id + ':' + key
    } catch (err) {
      // The peer is not reachable now: ask again shortly.
      await new Promise(resolve => setTimeout(resolve, Math.min(30000, 500 * 2 ** attempt)))
    }
  }
}

let heardAt = Date.now() // when the peer last sent anything
let unansweredSince = null // the first frame sent since then
// Set when the peer refused a change as too large: { over, limit, atLeast }.
// The editor then stops connecting until the person acts.
let tooLarge = null
// Set when the peer closed the connection because the document was deleted:
// its reason. The editor then stops connecting, for good.
let deletedBecause = null

// Counts the frames sent on each socket, so acknowledgements can be matched.
class CountingWebSocket extends WebSocket {
  constructor (url, protocols) {
    super(url, protocols)
    this.sent = 0
    this.addEventListener('message', () => {
      heardAt = Date.now()
      unansweredSince = null
    })
  }

  send (data) {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data)
    if (bytes.byteLength > maxFrameBytes) {
      // The peer would cut such a frame off without a word: say it here,
      // and send nothing.
      stopTooLarge({ over: bytes.byteLength - maxDocumentBytes, limit: maxDocumentBytes, atLeast: true })
      this.close()
      return
    }
    super.send(data)
    this.sent += 1
    if (unansweredSince === null) unansweredSince = Date.now()
    // Our sync step 2 carries everything the peer lacks: once it is
    // acknowledged, every edit made so far is on the peer's disk.
    if (bytes[0] === 0 && bytes[1] === 1 && unsavedUntil !== null) unsavedUntil = this.sent
  }
}

// null: everything is saved; Infinity: unsaved until the next sync; n: saved
// once frame n of the current socket is acknowledged.
let unsavedUntil = Infinity

const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'
const provider = new WebsocketProvider(wsUrl, refPath(key + '@' + space), ydoc, {
  params: { acks: '1', key: '1' },
  disableBc: true,
  WebSocketPolyfill: CountingWebSocket
})
provider.messageHandlers[MESSAGE_SAVED] = (_encoder, decoder, p) => {
  const count = decoding.readVarUint(decoder)
  if (unsavedUntil !== null && count >= unsavedUntil) unsavedUntil = null
  render()
}
ydoc.on('update', (_update, origin) => {
  if (origin === provider) return // came from the peer: already stored there
  const ws = provider.ws
  unsavedUntil = provider.wsconnected && ws && ws.readyState === WebSocket.OPEN ? ws.sent : Infinity
  render()
})
provider.on('connection-close', (event) => {
  if (event && event.code === CLOSE_TOO_LARGE) {
    const m = /(\d+) bytes over the limit of (\d+)/.exec(event.reason || '')
    stopTooLarge({ over: m ? Number(m[1]) : null, limit: m ? Number(m[2]) : maxDocumentBytes, atLeast: false })
  }
  if (event && event.code === CLOSE_DELETED) stopDeleted(event.reason)
  // This peer may no longer write in the space (server/spaces.py CLOSE_ROLE):
  // the page loads again, read-only, and says why.
  if (event && event.code === CLOSE_ROLE) location.reload()
  unansweredSince = null
  if (unsavedUntil !== null) unsavedUntil = Infinity
  render()
})
provider.on('status', render)
provider.on('sync', render)
provider.on('sync', synced => { if (synced) life.follow() })
window.addEventListener('online', render)
window.addEventListener('offline', render)

// A quiet connection is asked for a sign of life (query awareness: the peer
// answers with the cursors present and an acknowledgement), so a frozen
// peer shows even when nothing is being typed.
setInterval(() => {
  const ws = provider.ws
  if (provider.wsconnected && ws && unansweredSince === null && Date.now() - heardAt > PROBE_AFTER_MS) {
    ws.send(new Uint8Array([MESSAGE_QUERY_AWARENESS]))
  }
  render()
}, 500)

provider.awareness.setLocalStateField('user', { name: user.name, color: user.color, colorLight: user.color + '33' })
provider.awareness.on('change', renderPeople)

// -- status line -----------------------------------------------------------------
function peerSilent () {
  return provider.wsconnected && unansweredSince !== null && Date.now() - unansweredSince > PEER_SILENT_MS
}

function render () {
  let state
  if (deletedBecause !== null) state = 'deleted'
  else if (tooLarge) state = 'stopped'
  else if (!navigator.onLine) state = 'offline'
  else if (peerSilent()) state = 'not-responding'
  else if (provider.wsconnected && provider.synced) state = 'connected'
  else if (provider.wsconnected || provider.wsconnecting) state = provider.wsUnsuccessfulReconnects > 0 || everConnected ? 'reconnecting' : 'connecting'
  else state = 'reconnecting'
  if (provider.wsconnected && provider.synced) everConnected = true
  statusEl.dataset.state = state
  setText(statusEl, {
    deleted: 'deleted',
    stopped: 'stopped: too large',
    offline: 'offline',
    'not-responding': 'peer not responding',
    connected: 'connected'
  }[state] || state + '…')
  const saved = unsavedUntil === null
  savedEl.dataset.saved = String(saved)
  let savedText
  savedEl.hidden = readOnlyFromStart // nothing of this page's to save
  if (saved) savedText = 'saved on this peer'
  else if (deletedBecause !== null) savedText = 'not saved: kept in this browser'
  else if (tooLarge) savedText = 'not saved: the document is too large'
  else if (state === 'not-responding') savedText = 'peer not responding; your edits are kept in this browser'
  else savedText = provider.wsconnected ? 'saving…' : 'unsaved: kept in this browser'
  setText(savedEl, savedText)
  renderProblem()
}
let everConnected = false

function setText (el, text) {
  if (el.textContent !== text) el.textContent = text // unchanged text is not announced again
}

// -- a change too large for the peer ---------------------------------------------
function stopTooLarge (info) {
  tooLarge = info
  provider.shouldConnect = false // y-websocket reconnects only while this is set
  render()
}

// -- deleted while open ------------------------------------------------------------
function stopDeleted (reason) {
  deletedBecause = reason || 'this document was deleted'
  provider.shouldConnect = false
  tooLarge = null // nothing to retry: the banner of the deletion says what happened
  life.deleted(deletedBecause)
  // The peer has no history of it to show now: back to the (read-only) text.
  history.close()
  document.getElementById('history-toggle').disabled = true
  render()
}

// Read-only: nothing typed gets in, but the text still takes the focus, so
// that keys move the cursor and select (Ctrl-A selects the text, not the
// page) and the cursor is shown to the others.
const readOnlyExtensions = [
  EditorState.readOnly.of(true),
  EditorView.editable.of(false),
  EditorView.contentAttributes.of({ tabindex: '0', 'aria-readonly': 'true' })
]
function readOnly () {
  view.dispatch({ effects: editing.reconfigure(readOnlyExtensions) })
}

function mib (bytes) {
  return (bytes / 1048576).toFixed(bytes < 10 * 1048576 ? 1 : 0) + ' MiB'
}

function renderProblem () {
  problemEl.hidden = !tooLarge
  if (!tooLarge) return
  const over = tooLarge.over === null ? 'over' : (tooLarge.atLeast ? 'at least ' : '') + mib(tooLarge.over) + ' over'
  setText(document.getElementById('problem-text'),
    'This document would be too large for the peer: the last change is ' + over + ' its limit of ' +
    mib(tooLarge.limit) + '. It was not saved on the peer, and the editor has stopped sending. ' +
    'Your text is kept in this browser: undo the change (or delete some text) and try again, ' +
    'or export what you typed.')
  document.getElementById('problem-undo').disabled = undoManager.undoStack.length === 0
}

document.getElementById('problem-undo').addEventListener('click', () => {
  undoManager.undo()
  view.focus()
})
document.getElementById('problem-retry').addEventListener('click', () => {
  // Deleted text is kept while undo or redo may bring it back, and the
  // peer would be sent it again: forget this tab's undo history and drop
  // what was deleted, so that only the text now in the editor is sent.
  undoManager.clear(true, true)
  Y.tryGc(Y.createDeleteSetFromStructStore(ydoc.store), ydoc.store, ydoc.gcFilter)
  tooLarge = null
  provider.connect()
  render()
})
// The text as this page holds it, saved by the browser as a file.
function exportText () {
  const blob = new Blob([ytext.toString()], { type: 'text/markdown;charset=utf-8' })
  const link = document.createElement('a')
  link.href = URL.createObjectURL(blob)
  link.download = life.name() + '.md'
  document.body.append(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(link.href), 60000)
}
document.getElementById('problem-export').addEventListener('click', exportText)
document.getElementById('deleted-export').addEventListener('click', exportText)
// Once the document is deleted the peer has no export of it: this page's own.
document.querySelector('.bar [data-doc-path="/export"]').addEventListener('click', event => {
  if (deletedBecause === null) return
  event.preventDefault()
  exportText()
})
document.getElementById('problem-discard').addEventListener('click', async () => {
  if (!window.confirm('Discard every change this browser holds that the peer has not saved? This cannot be undone.')) return
  provider.destroy()
  if (local === null) return location.reload()
  await local.destroy()
  const request = indexedDB.deleteDatabase(local.name)
  request.onblocked = () => setText(document.getElementById('problem-text'),
    'Close the other tabs of this document to discard its unsaved changes.')
  request.onsuccess = () => location.reload()
})

function renderPeople () {
  peopleEl.replaceChildren()
  for (const [client, state] of provider.awareness.getStates()) {
    if (!state.user) continue
    const el = document.createElement('span')
    el.className = 'person'
    el.style.background = state.user.color
    el.style.color = textOn(state.user.color)
    el.textContent = state.user.name + (client === ydoc.clientID ? ' (you)' : '')
    peopleEl.append(el)
  }
}

// -- name and colour -------------------------------------------------------------
const nameInput = document.getElementById('user-name')
const colorInput = document.getElementById('user-color')
nameInput.value = user.name
colorInput.value = user.color
function saveUser () {
  user.name = nameInput.value.trim() || user.name
  user.color = colorInput.value
  localStorage.setItem('meshpad:user', JSON.stringify(user))
  provider.awareness.setLocalStateField('user', { name: user.name, color: user.color, colorLight: user.color + '33' })
}
nameInput.addEventListener('change', saveUser)
colorInput.addEventListener('input', saveUser)

// -- the editor ------------------------------------------------------------------
const undoManager = new Y.UndoManager(ytext)
const colours = { compartment: new Compartment(), extension: authorColours(ydoc, ytext) }
// Holds the undo keys (they write to the document even in a read-only
// editor); a deleted document's editor swaps them for read-only.
const editing = new Compartment()
const view = new EditorView({
  parent: root,
  state: EditorState.create({
    doc: ytext.toString(),
    extensions: [
      lineNumbers(),
      highlightActiveLineGutter(),
      highlightSpecialChars(),
      drawSelection(),
      dropCursor(),
      EditorState.allowMultipleSelections.of(true),
      indentOnInput(),
      bracketMatching(),
      rectangularSelection(),
      highlightActiveLine(),
      highlightSelectionMatches(),
      editing.of(readOnlyFromStart ? readOnlyExtensions : keymap.of(yUndoManagerKeymap)),
      markdownEditing(),
      keymap.of([...defaultKeymap, ...searchKeymap, indentWithTab]),
      search({ top: true }),
      EditorView.lineWrapping,
      EditorView.contentAttributes.of({ 'aria-label': 'Document text (Markdown)' }),
      colours.compartment.of([]),
      yCollab(ytext, provider.awareness, { undoManager })
    ]
  })
})

const life = setupLife({
  key,
  name: root.dataset.doc,
  ref: root.dataset.ref,
  space: root.dataset.space,
  spacesCount: Number(root.dataset.spacesCount || '1'),
  firstSpace: root.dataset.firstSpace === 'true',
  readOnlyFromStart,
  ydoc,
  user,
  readOnly,
  isSynced: () => provider.synced
})
const panes = document.getElementById('panes')
const history = setupHistory({ ref: life.ref, ydoc, ytext, view, user, colours, editorEl: panes })
const preview = setupPreview({
  view, ytext, panes, previewEl: document.getElementById('preview'), control: document.getElementById('view-choice')
})

// Remote cursors' names in a colour that reads on their background.
new MutationObserver(() => {
  for (const info of root.querySelectorAll('.cm-ySelectionInfo:not([data-read])')) {
    const caret = info.closest('.cm-ySelectionCaret')
    if (!caret) continue
    info.style.color = textOn(rgbToHex(caret.style.backgroundColor))
    info.dataset.read = ''
  }
}).observe(root, { childList: true, subtree: true })

// The panes fill the window below the bar, whose height changes as it wraps.
const bar = document.querySelector('header.bar')
new ResizeObserver(() => {
  document.documentElement.style.setProperty('--bar-h', bar.offsetHeight + 'px')
}).observe(bar)

window.meshpad = {
  doc: ydoc, text: ytext, provider, local, view, undoManager, history, life, preview,
  isSaved: () => unsavedUntil === null, tooLarge: () => tooLarge, deleted: () => deletedBecause,
  readOnly: () => readOnlyFromStart || deletedBecause !== null
}
render()
renderPeople()
