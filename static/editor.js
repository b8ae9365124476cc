// The Meshpad editor: CodeMirror 6 bound to a Yjs document that this page
// keeps in the browser (and in IndexedDB), synchronised with this machine's
// peer over the y-websocket protocol at /ws/{name}.
//
// "Saved" means the peer has written every edit of this page to disk: the
// peer acknowledges frames with message 100 (see crdt/ywire.py), counting the
// frames this page sent on the current connection.
import {
  Y, WebsocketProvider, IndexeddbPersistence, yCollab, yUndoManagerKeymap, decoding,
  EditorView, EditorState, keymap, drawSelection, dropCursor, highlightActiveLine,
  highlightActiveLineGutter, highlightSpecialChars, lineNumbers, rectangularSelection,
  defaultKeymap, indentWithTab, syntaxHighlighting, defaultHighlightStyle, bracketMatching,
  indentOnInput, searchKeymap, highlightSelectionMatches, markdown
} from 'meshpad-vendor'

const MESSAGE_SAVED = 100
const root = document.getElementById('editor')
const name = root.dataset.doc
const statusEl = document.getElementById('status')
const savedEl = document.getElementById('saved')
const peopleEl = document.getElementById('people')

// -- who am I ----------------------------------------------------------------
const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#0f8b8d', '#f032e6', '#9a6324']
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
const local = new IndexeddbPersistence('meshpad:' + location.host + ':' + name, ydoc)

// Counts the frames sent on each socket, so acknowledgements can be matched.
class CountingWebSocket extends WebSocket {
  constructor (url, protocols) {
    super(url, protocols)
    this.sent = 0
  }

  send (data) {
    super.send(data)
    this.sent += 1
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data)
    // Our sync step 2 carries everything the peer lacks: once it is
    // acknowledged, every edit made so far is on the peer's disk.
    if (bytes[0] === 0 && bytes[1] === 1 && unsavedUntil !== null) unsavedUntil = this.sent
  }
}

// null: everything is saved; Infinity: unsaved until the next sync; n: saved
// once frame n of the current socket is acknowledged.
let unsavedUntil = Infinity

const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'
const provider = new WebsocketProvider(wsUrl, name, ydoc, {
  params: { acks: '1' },
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
provider.on('connection-close', () => {
  if (unsavedUntil !== null) unsavedUntil = Infinity
  render()
})
provider.on('status', render)
provider.on('sync', render)
window.addEventListener('online', render)
window.addEventListener('offline', render)

provider.awareness.setLocalStateField('user', { name: user.name, color: user.color, colorLight: user.color + '33' })
provider.awareness.on('change', renderPeople)

// -- status line -----------------------------------------------------------------
function render () {
  let state
  if (!navigator.onLine) state = 'offline'
  else if (provider.wsconnected && provider.synced) state = 'connected'
  else if (provider.wsconnected || provider.wsconnecting) state = provider.wsUnsuccessfulReconnects > 0 || everConnected ? 'reconnecting' : 'connecting'
  else state = 'reconnecting'
  if (provider.wsconnected && provider.synced) everConnected = true
  statusEl.dataset.state = state
  statusEl.textContent = state === 'connected' ? 'connected' : state === 'offline' ? 'offline' : state + '…'
  const saved = unsavedUntil === null
  savedEl.dataset.saved = String(saved)
  savedEl.textContent = saved ? 'saved on this peer' : (provider.wsconnected ? 'saving…' : 'unsaved: kept in this browser')
}
let everConnected = false

function renderPeople () {
  peopleEl.replaceChildren()
  for (const [client, state] of provider.awareness.getStates()) {
    if (!state.user) continue
    const el = document.createElement('span')
    el.className = 'person'
    el.style.background = state.user.color
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
      syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
      bracketMatching(),
      rectangularSelection(),
      highlightActiveLine(),
      highlightSelectionMatches(),
      keymap.of([...yUndoManagerKeymap, ...defaultKeymap, ...searchKeymap, indentWithTab]),
      markdown(),
      EditorView.lineWrapping,
      yCollab(ytext, provider.awareness, { undoManager })
    ]
  })
})

window.meshpad = { doc: ydoc, text: ytext, provider, local, view, undoManager, isSaved: () => unsavedUntil === null }
render()
renderPeople()
