// The editor's history: the History panel (every version, a slider to step
// through them, a read-only view of one with what changed highlighted by
// author, restore, naming), and the author colouring of the live text.
//
// The list and the versions come from the peer (/api/docs/{ref}/...),
// which reads them from the document's own history. Who wrote each
// character is read here, from this page's copy of the document: its items
// carry their client ids, and the root map "meshpad:authors" (replicated
// with the text) says who is behind each.
import { Decoration, ViewPlugin, RangeSetBuilder, decoding } from 'meshpad-vendor'
import { refPath } from 'meshpad-life'

const HISTORY = 'meshpad:history'
const AUTHORS = 'meshpad:authors'

export function when (iso) {
  const at = new Date(iso)
  const seconds = (Date.now() - at.getTime()) / 1000
  let ago
  if (seconds < 60) ago = 'just now'
  else if (seconds < 3600) ago = Math.round(seconds / 60) + ' min ago'
  else if (seconds < 86400) ago = Math.round(seconds / 3600) + ' h ago'
  else ago = at.toLocaleDateString()
  return { ago, exact: at.toLocaleString() }
}

// The text colour that reads on a background of *colour* (#rrggbb): black
// or white, whichever contrasts more (WCAG 2 relative luminance). A
// person's colour is theirs to choose, so white text alone is not enough.
export function inkOn (colour) {
  const hex = /^#[0-9a-f]{6}$/i.test(colour || '') ? colour : '#667085'
  const channel = i => {
    const v = parseInt(hex.slice(i, i + 2), 16) / 255
    return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4
  }
  const l = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
  return (l + 0.05) / 0.05 > 1.05 / (l + 0.05) ? '#000' : '#fff'
}

function chip (author) {
  const el = document.createElement('span')
  el.className = 'person'
  el.style.background = author.color || '#667085'
  el.style.color = inkOn(author.color)
  el.textContent = author.name || 'someone'
  el.title = (author.name ? 'name as typed: ' + author.name : 'no name given') +
    (author.peer ? '; entered through peer ' + author.peer.slice(0, 12) + ' (as that peer vouches)' : '')
  return el
}

// -- who wrote what, in this page's copy of the document ------------------------

// A history entry's record (crdt/entries.py): the time it names and, for
// its writer's chain, the state vector entries it adds.
function readEntry (bytes) {
  const d = decoding.createDecoder(bytes)
  if (decoding.readUint8(d) !== 1) return null
  decoding.readUint8(d) // kind
  const flags = decoding.readUint8(d)
  const at = decoding.readVarUint(d) / 1000
  decoding.readVarUint(d) // session length
  decoding.readUint8Array(d, 12) // id
  const writer = decoding.readVarUint(d)
  decoding.readVarUint(d) // inserted
  decoding.readVarUint(d) // deleted
  for (let n = decoding.readVarUint(d); n > 0; n--) {
    decoding.readVarUint(d)
    decoding.readVarString(d)
    decoding.readVarString(d)
  }
  if (flags & 2) decoding.readVarString(d)
  if (flags & 4) decoding.readUint8Array(d, 12)
  const sv = new Map()
  for (let n = decoding.readVarUint(d); n > 0; n--) sv.set(decoding.readVarUint(d), decoding.readVarUint(d))
  return { at, chain: writer, full: Boolean(flags & 1), sv }
}

// When each client's characters were written: the versions say, for every
// client, up to which clock they cover it.
function writtenTimes (ydoc) {
  const chains = new Map() // writer -> state vector so far
  const times = new Map() // client -> [[clock reached, at]], by clock
  for (const record of ydoc.getArray(HISTORY).toArray()) {
    let entry = null
    try { entry = record instanceof Uint8Array ? readEntry(record) : null } catch (_) { entry = null }
    if (!entry) continue
    const sv = entry.full ? new Map() : (chains.get(entry.chain) || new Map())
    for (const [client, clock] of entry.sv) sv.set(client, clock)
    chains.set(entry.chain, sv)
    for (const [client, clock] of sv) {
      if (!times.has(client)) times.set(client, [])
      times.get(client).push([clock, entry.at])
    }
  }
  for (const list of times.values()) list.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  return (client, clock) => {
    const list = times.get(client)
    if (!list) return null
    for (const [reached, at] of list) if (reached > clock) return at
    return null
  }
}

function authorsOf (ydoc) {
  const map = ydoc.getMap(AUTHORS)
  return client => map.get(String(client)) || null
}

// Ranges of the live text by client: [from, to, client, clock] in editor
// positions (UTF-16 units, as CodeMirror and Yjs count).
export function attribution (ytext) {
  const ranges = []
  let pos = 0
  for (let item = ytext._start; item !== null; item = item.right) {
    if (item.deleted || !item.countable) continue
    const last = ranges[ranges.length - 1]
    if (last && last[1] === pos && last[2] === item.id.client) last[1] += item.length
    else ranges.push([pos, pos + item.length, item.id.client, item.id.clock])
    pos += item.length
  }
  return ranges
}

export function authorColours (ydoc, ytext) {
  const authors = authorsOf(ydoc)
  const build = () => {
    const writtenAt = writtenTimes(ydoc)
    const builder = new RangeSetBuilder()
    for (const [from, to, client, clock] of attribution(ytext)) {
      if (from === to) continue
      const who = authors(client)
      const at = writtenAt(client, clock)
      const name = who && who.name ? who.name : 'someone'
      const title = name + (at ? ' · written ' + when(new Date(at * 1000).toISOString()).exact : ' · not in a version yet')
      builder.add(from, to, Decoration.mark({
        class: 'by-author',
        attributes: { style: '--who: ' + ((who && who.color) || '#98a2b3'), title, 'data-author': name }
      }))
    }
    return builder.finish()
  }
  return ViewPlugin.fromClass(class {
    constructor (view) {
      this.decorations = build()
      this.timer = null
      this.view = view
      this.refresh = () => {
        if (this.timer !== null) return
        this.timer = setTimeout(() => {
          this.timer = null
          this.decorations = build()
          this.view.dispatch({}) // redraw with the new ranges
        }, 150)
      }
      ydoc.on('update', this.refresh)
    }

    update (update) {
      if (update.docChanged) this.decorations = this.decorations.map(update.changes)
    }

    destroy () {
      ydoc.off('update', this.refresh)
      if (this.timer !== null) clearTimeout(this.timer)
    }
  }, { decorations: plugin => plugin.decorations })
}

// -- the panel -------------------------------------------------------------------

export function setupHistory ({ ref, ydoc, ytext, view, user, colours, editorEl }) {
  const panel = document.getElementById('history-panel')
  const list = document.getElementById('history-list')
  const slider = document.getElementById('history-slider')
  const sliderLabel = document.getElementById('history-slider-label')
  const viewer = document.getElementById('version-view')
  const viewerText = document.getElementById('version-text')
  const viewerTitle = document.getElementById('version-title')
  const status = document.getElementById('history-status')
  const toggle = document.getElementById('history-toggle')
  const authorsToggle = document.getElementById('authors-toggle')
  const nameForm = document.getElementById('name-form')
  // *ref* gives how URLs name the document now (name, or name@space): it
  // follows renames.
  const api = () => '/api/docs/' + refPath(ref())
  let versions = [] // newest first, as the peer lists them
  let shown = null // the version on screen, or null: live

  const say = text => { status.textContent = text }

  async function load () {
    try {
      const resp = await fetch(api() + '/history', { cache: 'no-store' })
      if (!resp.ok) throw new Error((await resp.json()).error || resp.statusText)
      versions = (await resp.json()).versions
      renderList()
    } catch (err) {
      say('The history cannot be read now: ' + err.message)
    }
  }

  function renderList () {
    list.replaceChildren()
    versions.forEach((v, i) => {
      const li = document.createElement('li')
      const button = document.createElement('button')
      button.type = 'button'
      button.className = 'version-button'
      button.dataset.id = v.id
      button.setAttribute('aria-pressed', String(shown !== null && shown.id === v.id))
      const t = when(v.at)
      const time = document.createElement('time')
      time.dateTime = v.at
      time.textContent = t.ago
      time.title = t.exact
      button.append(time)
      if (v.label) {
        const label = document.createElement('strong')
        label.className = 'label'
        label.textContent = '“' + v.label + '”'
        button.append(' ', label)
      }
      if (v.kind === 'restore') button.append(' restored an earlier version')
      const who = document.createElement('span')
      who.className = 'who'
      for (const a of v.authors) who.append(chip(a))
      button.append(' ', who)
      if (v.inserted || v.deleted) {
        const counts = document.createElement('span')
        counts.className = 'counts'
        counts.innerHTML = '<span class="plus"></span> <span class="minus"></span>'
        counts.firstChild.textContent = '+' + v.inserted.toLocaleString()
        counts.lastChild.textContent = '−' + v.deleted.toLocaleString()
        button.append(' ', counts)
      }
      button.addEventListener('click', () => open(i))
      li.append(button)
      list.append(li)
    })
    slider.max = String(versions.length)
    slider.disabled = versions.length === 0
    if (shown === null) slider.value = String(versions.length)
    sliderLabel.textContent = shown === null ? 'live' : when(shown.at).exact
    slider.setAttribute('aria-valuetext', sliderLabel.textContent)
    if (versions.length === 0) say('No versions yet: one is recorded when an editing session ends, or when you name one.')
    else if (shown === null) say(versions.length + ' version' + (versions.length === 1 ? '' : 's') + '.')
  }

  // Slider position p: 0 is the oldest version, versions.length is live.
  async function open (index) {
    const v = versions[index]
    if (!v) return backToLive()
    say('Opening the version of ' + when(v.at).exact + '…')
    const resp = await fetch(api() + '/versions/' + v.id, { cache: 'no-store' })
    const body = await resp.json()
    if (!resp.ok) return say(body.error)
    shown = body
    viewerTitle.textContent = 'Version of ' + when(body.at).exact + (body.label ? ' “' + body.label + '”' : '') +
      ' by ' + (body.authors.map(a => a.name || 'someone').join(', ') || 'someone')
    viewerText.replaceChildren()
    if (body.changes === null) {
      viewerText.textContent = body.text
    } else {
      for (const span of body.changes) {
        if (span.op === '=') {
          viewerText.append(span.text)
          continue
        }
        const el = document.createElement(span.op === '+' ? 'ins' : 'del')
        const who = span.op === '+' ? span.author : span.removed_by
        el.style.setProperty('--who', (who && who.color) || '#667085')
        el.title = (span.op === '+' ? 'added by ' : 'removed by ') + ((who && who.name) || 'someone')
        el.textContent = span.text
        viewerText.append(el)
      }
    }
    viewer.hidden = false
    editorEl.hidden = true
    slider.value = String(versions.length - 1 - index)
    renderList()
    say('Showing the version of ' + when(body.at).exact + ', read-only.')
  }

  function backToLive () {
    shown = null
    viewer.hidden = true
    editorEl.hidden = false
    slider.value = String(versions.length)
    renderList()
    view.focus()
  }

  async function restore () {
    if (shown === null) return
    const resp = await fetch(api() + '/restore', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ version: shown.id, author: { name: user.name, color: user.color } })
    })
    const body = await resp.json()
    if (!resp.ok) return say('Cannot restore: ' + body.error)
    backToLive()
    say('Restored the version of ' + when(shown === null ? body.at : shown.at).exact + ', as a new change.')
  }

  slider.addEventListener('input', () => {
    const p = Number(slider.value)
    if (p >= versions.length) backToLive()
    else open(versions.length - 1 - p)
  })
  document.getElementById('version-restore').addEventListener('click', restore)
  document.getElementById('version-back').addEventListener('click', backToLive)
  nameForm.addEventListener('submit', async event => {
    event.preventDefault()
    const field = nameForm.elements.label
    const resp = await fetch(api() + '/versions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ label: field.value, author: { name: user.name, color: user.color } })
    })
    const body = await resp.json()
    if (!resp.ok) return say('Cannot name the version: ' + body.error)
    field.value = ''
    say('Named “' + body.label + '”.')
    await load()
  })
  toggle.addEventListener('click', () => {
    const open = panel.hidden
    panel.hidden = !open
    toggle.setAttribute('aria-expanded', String(open))
    if (open) load()
    else backToLive()
  })
  authorsToggle.addEventListener('click', () => {
    const on = authorsToggle.getAttribute('aria-pressed') !== 'true'
    authorsToggle.setAttribute('aria-pressed', String(on))
    view.dispatch({ effects: colours.compartment.reconfigure(on ? colours.extension : []) })
    view.dom.classList.toggle('showing-authors', on)
  })
  // The history grows as versions replicate: refresh the list when it does.
  ydoc.getArray(HISTORY).observe(() => { if (!panel.hidden) load() })
  function close () {
    if (shown !== null) backToLive()
    panel.hidden = true
    toggle.setAttribute('aria-expanded', 'false')
  }
  return { load, open, backToLive, close }
}
