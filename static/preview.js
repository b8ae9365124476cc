// The editor's preview: the document rendered live beside (or instead of)
// the text, scrolled along with it.
//
// markdown-it renders CommonMark with GFM tables, strikethrough and
// autolinks (linkify); task lists ("- [ ] ...") are marked here on its token
// stream, and their checkboxes toggle the "[ ]" in the text as an edit of
// this editor (so it replicates and is undone like typing). Every block
// carries the line it starts on (markdown-it's token.map), which is how the
// two panes follow each other's scrolling.
//
// The rendered HTML goes through DOMPurify (HTML only: no SVG, MathML,
// scripts, frames, forms, styles or event handlers) before it reaches the
// page. Images are shown only from this peer or as data: URLs; one from
// elsewhere is replaced by a note naming it, so a document cannot make the
// page fetch anything (the page's CSP would block it too). Links open in a
// new tab with no opener and no referrer.
//
// Rendering waits for the preview to be shown, and then runs at most once a
// frame, after the editor has painted.
import { highlightCode, classHighlighter, EditorView } from 'meshpad-vendor'
import { findLanguage, loadPreviewLibraries } from 'meshpad-markdown-commands'

const STORAGE = 'meshpad:view'
export const VIEWS = ['editor', 'split', 'preview']
const LABELS = { editor: 'editor only', split: 'side by side', preview: 'preview only' }
const NARROW = '(max-width: 700px)' // no room for two panes: side by side shows the editor

// -- rendering ---------------------------------------------------------------------

function escapeHtml (text) {
  return text.replace(/[&<>"]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c])
}

// A fenced block's code, highlighted by the editor's own grammar for it.
// Blocks unchanged since the last rendering are not parsed again.
let highlighted = new Map()
let highlightedBefore = new Map()
function highlight (code, info) {
  const key = info + '\u0000' + code
  const known = highlighted.get(key) ?? highlightedBefore.get(key)
  if (known !== undefined) {
    highlighted.set(key, known)
    return known
  }
  const out = highlightFresh(code, info)
  highlighted.set(key, out)
  return out
}

function highlightFresh (code, info) {
  const found = findLanguage(info)
  if (!found || !found.support) return ''
  const parser = found.support.language.parser
  let out = ''
  highlightCode(code, parser.parse(code), classHighlighter,
    (text, classes) => { out += classes ? '<span class="' + classes + '">' + escapeHtml(text) + '</span>' : escapeHtml(text) },
    () => { out += '\n' })
  return out
}

const TASK = /^\[([ xX])\](?=\s|$)/

// GFM task lists on markdown-it's tokens: a list item whose first paragraph
// starts with "[ ]" or "[x]" is a task; the box is drawn after sanitising.
function taskLists (md) {
  md.core.ruler.after('inline', 'meshpad-tasks', state => {
    const tokens = state.tokens
    for (let i = 2; i < tokens.length; i++) {
      const inline = tokens[i]
      if (inline.type !== 'inline' || tokens[i - 1].type !== 'paragraph_open' || tokens[i - 2].type !== 'list_item_open') continue
      const m = TASK.exec(inline.content)
      const first = inline.children && inline.children[0]
      if (!m || !first || first.type !== 'text' || !first.content.startsWith(m[0])) continue
      first.content = first.content.slice(m[0].length).replace(/^\s/, '')
      const item = tokens[i - 2]
      item.attrJoin('class', 'task-list-item')
      item.attrSet('data-task', m[1] === ' ' ? 'open' : 'done')
      for (let j = i - 3; j >= 0; j--) {
        const t = tokens[j]
        if (t.level === item.level - 1 && (t.type === 'bullet_list_open' || t.type === 'ordered_list_open')) {
          if (!(t.attrGet('class') || '').includes('contains-task-list')) t.attrJoin('class', 'contains-task-list')
          break
        }
      }
    }
  })
}

// Every block that opens says the line it starts on, counted from the first
// line of the top-level block it is in (so that a block's HTML does not
// change when lines are added above it, and can be kept as it is).
function sourceLines (md) {
  md.core.ruler.push('meshpad-lines', state => {
    let start = 0
    for (const token of state.tokens) {
      if (token.level === 0 && token.nesting >= 0 && token.map) start = token.map[0]
      if (token.map && token.block && (token.nesting === 1 || token.type === 'fence' || token.type === 'code_block' || token.type === 'hr')) {
        token.attrSet('data-line-offset', String(token.map[0] - start))
      }
    }
  })
}

// The top-level blocks of *tokens*: [first line, tokens].
function topLevelBlocks (tokens) {
  const blocks = []
  let current = null
  for (const token of tokens) {
    if (current === null) {
      current = [token.map ? token.map[0] : 0, []]
      blocks.push(current)
    }
    current[1].push(token)
    if (token.level === 0 && token.nesting <= 0) current = null
  }
  return blocks
}

// A rendered element's line in the text (0-based).
export function lineOf (el) {
  const block = el.classList.contains('md-block') ? el : el.closest('.md-block')
  return Number(block.dataset.line) + (el === block ? 0 : Number(el.dataset.lineOffset))
}

function makeRenderer ({ MarkdownIt }) {
  const md = new MarkdownIt({ html: true, linkify: true, typographer: false, highlight })
  md.use(taskLists)
  md.use(sourceLines)
  return md
}

function makePurifier ({ DOMPurify }) {
  const purify = DOMPurify(window)
  purify.addHook('afterSanitizeAttributes', node => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank')
      node.setAttribute('rel', 'noopener noreferrer')
    }
    if (node.tagName === 'IMG') {
      const src = node.getAttribute('src') || ''
      if (!allowedImage(src)) {
        node.removeAttribute('src')
        if (src) node.setAttribute('data-blocked-src', src)
      }
    }
  })
  return purify
}

function allowedImage (src) {
  if (/^data:image\/(png|gif|jpe?g|webp|avif);/i.test(src)) return true
  try {
    return new URL(src, location.href).origin === location.origin
  } catch (_) {
    return false
  }
}

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'option', 'audio', 'video', 'source',
    'track', 'picture', 'dialog'],
  FORBID_ATTR: ['style', 'srcset', 'background', 'poster', 'ping', 'action', 'formaction', 'autofocus'],
  RETURN_DOM_FRAGMENT: true
}

// One block's HTML as a sanitised DOM fragment, with the task boxes drawn.
export function sanitised (purify, html) {
  const fragment = purify.sanitize(html, PURIFY)
  for (const img of fragment.querySelectorAll('img[data-blocked-src]')) {
    const note = document.createElement('span')
    note.className = 'blocked-image'
    note.textContent = (img.getAttribute('alt') || 'image') + ' (not loaded: ' + img.dataset.blockedSrc + ')'
    note.title = 'The preview loads no images from the network'
    img.replaceWith(note)
  }
  for (const item of fragment.querySelectorAll('li.task-list-item[data-task]')) {
    const box = document.createElement('input')
    box.type = 'checkbox'
    box.className = 'task-box'
    box.checked = item.dataset.task === 'done'
    box.setAttribute('aria-label', 'done: ' + (item.textContent.trim().slice(0, 80) || 'task'))
    const holder = item.firstElementChild && item.firstElementChild.tagName === 'P' ? item.firstElementChild : item
    holder.prepend(box)
  }
  return fragment
}

// -- the panes ----------------------------------------------------------------------

export function setupPreview ({ view, ytext, panes, previewEl, control }) {
  let md = null
  let purify = null
  let libraries = null
  let librariesLoading = null
  let chosen = loadView()
  let dirty = true
  let frame = null
  const narrow = window.matchMedia(NARROW)
  const buttons = [...control.querySelectorAll('button[data-view]')]

  function loadView () {
    let value = null
    try { value = localStorage.getItem(STORAGE) } catch (_) { value = null }
    return VIEWS.includes(value) ? value : 'editor'
  }

  // What is shown: side by side needs room for two panes.
  function shown () {
    return chosen === 'split' && narrow.matches ? 'editor' : chosen
  }

  function choose (value, { remember = true } = {}) {
    chosen = value
    if (remember) {
      try { localStorage.setItem(STORAGE, value) } catch (_) {}
    }
    apply()
  }

  function apply () {
    const now = shown()
    // The focus stays in view: on the pane that is left.
    const active = document.activeElement
    const moveTo = now === 'preview' && view.dom.contains(active) ? previewEl
      : now === 'editor' && previewEl.contains(active) ? view : null
    panes.dataset.view = now
    if (moveTo) moveTo.focus()
    for (const button of buttons) button.setAttribute('aria-pressed', String(button.dataset.view === now))
    if (now !== 'editor') schedule()
    if (now !== 'preview') view.requestMeasure() // the editor may have been hidden: measure it again
  }

  function cycle () {
    const order = narrow.matches ? ['editor', 'preview'] : VIEWS
    const at = order.indexOf(shown())
    choose(order[(at + 1) % order.length])
  }

  // -- rendering, at most once a frame and only while shown ---------------
  function schedule () {
    dirty = true
    if (frame !== null || shown() === 'editor') return
    // After the next frame is painted: the editor comes first. A long
    // document whose rendering takes a while waits that long again, so
    // typing stays ahead of it.
    frame = requestAnimationFrame(() => setTimeout(() => { frame = null; if (dirty) render() }, Math.min(400, 2 * lastCost)))
  }
  let lastCost = 0 // ms the last rendering took

  function render () {
    if (shown() === 'editor') return
    if (md === null) {
      // The renderer, the sanitiser and the grammars come with the first
      // rendering (the bundle's second entry); until then nothing is shown.
      if (libraries === null) {
        librariesLoading ??= loadPreviewLibraries().then(loaded => { libraries = loaded; schedule() },
          error => { librariesLoading = null; console.error('the preview could not load its renderer', error) })
        return
      }
      md = makeRenderer(libraries)
      purify = makePurifier(libraries)
    }
    dirty = false
    const started = performance.now()
    const keep = previewEl.scrollTop
    highlightedBefore = highlighted
    highlighted = new Map()
    // Each top-level block is rendered; one whose HTML is as before keeps
    // its elements (sanitised and laid out once).
    const env = {}
    const wanted = []
    const reusable = new Map()
    for (const el of previewEl.children) {
      const list = reusable.get(el.mdHtml)
      if (list) list.push(el)
      else reusable.set(el.mdHtml, [el])
    }
    for (const [line, tokens] of topLevelBlocks(md.parse(view.state.doc.toString(), env))) {
      const html = md.renderer.render(tokens, md.options, env)
      let el = (reusable.get(html) || []).shift()
      if (!el) {
        el = document.createElement('div')
        el.className = 'md-block'
        el.mdHtml = html
        el.append(sanitised(purify, html))
      }
      if (el.dataset.line !== String(line)) el.dataset.line = String(line)
      wanted.push(el)
    }
    highlightedBefore = new Map()
    const kept = new Set(wanted)
    for (const el of [...previewEl.children]) if (!kept.has(el)) el.remove()
    let cursor = previewEl.firstElementChild
    for (const el of wanted) {
      if (el === cursor) cursor = cursor.nextElementSibling
      else previewEl.insertBefore(el, cursor)
    }
    blocks = [...previewEl.querySelectorAll('.md-block, .md-block [data-line-offset]')]
    previewEl.scrollTop = keep
    if (shown() === 'split') followEditor()
    lastCost = performance.now() - started
    previewEl.dataset.rendered = String(Number(previewEl.dataset.rendered || 0) + 1)
  }

  ytext.observe(schedule)
  narrow.addEventListener('change', apply)

  // -- task boxes -------------------------------------------------------------
  previewEl.addEventListener('change', event => {
    const box = event.target
    if (!(box instanceof HTMLInputElement) || !box.classList.contains('task-box')) return
    const item = box.closest('li[data-line-offset]')
    if (!item || !toggleTask(lineOf(item))) box.checked = !box.checked // the text says otherwise
  })

  function toggleTask (lineIndex) {
    const doc = view.state.doc
    if (view.state.readOnly || !(lineIndex >= 0 && lineIndex < doc.lines)) return false
    const line = doc.line(lineIndex + 1)
    const m = /^(\s*(?:>\s?)*\s*(?:[-*+]|\d{1,9}[.)])\s+)\[([ xX])\]/.exec(line.text)
    if (!m) return false
    const at = line.from + m[1].length + 1
    view.dispatch({ changes: { from: at, to: at + 1, insert: m[2] === ' ' ? 'x' : ' ' }, userEvent: 'input.toggle' })
    return true
  }

  // -- scrolling together -------------------------------------------------------
  let blocks = []
  const expected = new WeakMap() // a scroll this code made, not to be echoed back

  function setScroll (el, top) {
    const target = Math.max(0, Math.min(Math.round(top), el.scrollHeight - el.clientHeight))
    if (Math.abs(el.scrollTop - target) < 1) return
    expected.set(el, target)
    el.scrollTop = target
  }

  function echoed (el) {
    const target = expected.get(el)
    if (target === undefined) return false
    expected.delete(el)
    return Math.abs(el.scrollTop - target) <= 1
  }

  function blockTop (el) {
    return el.getBoundingClientRect().top - previewEl.getBoundingClientRect().top + previewEl.scrollTop
  }

  // The line (fractional, 0-based) at the top of the editor's pane.
  function editorTopLine () {
    const scroller = view.scrollDOM
    const height = scroller.scrollTop - view.documentPadding.top
    const block = view.lineBlockAtHeight(Math.max(0, height))
    const line = view.state.doc.lineAt(block.from).number - 1
    const fraction = block.height > 0 ? Math.min(1, Math.max(0, (height - block.top) / block.height)) : 0
    return line + fraction
  }

  // The index of the last block whose key (its line, or its top in the
  // preview) is at most value; blocks are in document order, so keys rise.
  function lastAtOrBefore (key, value) {
    let lo = 0
    let hi = blocks.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (key(blocks[mid]) <= value) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  function followEditor () {
    if (blocks.length === 0) return
    if (view.scrollDOM.scrollTop <= 0) { setScroll(previewEl, 0); return }
    const line = editorTopLine()
    // The last block starting at or before the line, and the next after it.
    const lo = lastAtOrBefore(lineOf, line)
    const a = blocks[lo]
    const aLine = lineOf(a)
    let next = lo + 1
    while (next < blocks.length && lineOf(blocks[next]) <= aLine) next++
    const aTop = aLine <= line ? blockTop(a) : 0
    let top = aTop
    if (next < blocks.length) {
      const bLine = lineOf(blocks[next])
      const from = aLine <= line ? aLine : 0
      top = aTop + (blockTop(blocks[next]) - aTop) * (line - from) / Math.max(1, bLine - from)
    } else {
      const end = view.state.doc.lines
      top = aTop + (previewEl.scrollHeight - aTop) * (line - aLine) / Math.max(1, end - aLine)
    }
    setScroll(previewEl, top)
  }

  function followPreview () {
    if (blocks.length === 0) return
    const y = previewEl.scrollTop
    if (y <= 0) { editorEcho = 0; setScroll(view.scrollDOM, 0); return }
    const lo = lastAtOrBefore(blockTop, y)
    const a = blocks[lo]
    const aLine = lineOf(a)
    const aTop = blockTop(a)
    let next = lo + 1
    while (next < blocks.length && lineOf(blocks[next]) <= aLine) next++
    let line = aLine
    if (next < blocks.length) {
      const bTop = blockTop(blocks[next])
      const bLine = lineOf(blocks[next])
      if (bTop > aTop) line = aLine + (bLine - aLine) * Math.min(1, (y - aTop) / (bTop - aTop))
    }
    // Heights of lines the editor has not drawn are estimates: let it
    // measure while it scrolls there.
    const doc = view.state.doc
    const whole = Math.min(doc.lines, Math.floor(line) + 1)
    editorEcho = whole - 1
    view.dispatch({ effects: EditorView.scrollIntoView(doc.line(whole).from, { y: 'start', yMargin: 0 }) })
  }
  let editorEcho = null // the line this code scrolled the editor to

  view.scrollDOM.addEventListener('scroll', () => {
    if (shown() !== 'split') return
    if (editorEcho !== null) {
      if (Math.abs(editorTopLine() - editorEcho) < 1) return
      editorEcho = null
    }
    followEditor()
  }, { passive: true })
  previewEl.addEventListener('scroll', () => {
    if (echoed(previewEl) || shown() !== 'split') return
    followPreview()
  }, { passive: true })

  // -- the control and the shortcut ------------------------------------------
  for (const button of buttons) {
    button.title = 'Show ' + LABELS[button.dataset.view] + ' (Ctrl-Alt-P cycles)'
    button.addEventListener('click', () => choose(button.dataset.view))
  }
  document.addEventListener('keydown', event => {
    if ((event.ctrlKey || event.metaKey) && event.altKey && !event.shiftKey && event.code === 'KeyP') {
      event.preventDefault()
      cycle()
    }
  })

  apply()
  return {
    shown,
    choose,
    cycle,
    render,
    followEditor,
    followPreview
  }
}
