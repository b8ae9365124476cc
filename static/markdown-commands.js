// The editor's Markdown: the languages of code blocks (the same grammars
// highlight the preview's code blocks, see preview.js), the style of
// headings and inline marks, the formatting shortcuts, and list
// continuation that does not double a marker the person types.
import {
  EditorSelection, StateField, StateEffect, Prec, keymap, EditorView, Compartment, ViewPlugin,
  HighlightStyle, syntaxHighlighting, LanguageDescription, LanguageSupport, StreamLanguage, tags, classHighlighter,
  markdown, markdownLanguage, insertNewlineContinueMarkup
} from 'meshpad-vendor'

// The grammars (and the preview's renderer) are the bundle's second entry,
// fetched once the editor has painted a document with a fenced block, when
// one is typed, or when the preview opens: the editor paints without them,
// and its code blocks are coloured a moment later.
let extrasLoading = null
export function loadExtras () {
  extrasLoading ??= import('meshpad-extras')
  return extrasLoading
}

// Names a fence may give (```js, ```python, ...), matched case-insensitively;
// empty until the grammars have come.
let codeLanguages = []
let languagesLoading = null
export function loadLanguages () {
  languagesLoading ??= loadExtras().then(x => {
    const lang = (name, alias, support) => LanguageDescription.of({ name, alias, support })
    codeLanguages = [
      lang('JavaScript', ['js', 'javascript', 'mjs', 'cjs', 'node'], x.javascript()),
      lang('JSX', ['jsx'], x.javascript({ jsx: true })),
      lang('TypeScript', ['ts', 'typescript'], x.javascript({ typescript: true })),
      lang('TSX', ['tsx'], x.javascript({ jsx: true, typescript: true })),
      lang('Python', ['py', 'python', 'python3'], x.python()),
      lang('JSON', ['json', 'jsonc', 'json5'], x.json()),
      lang('CSS', ['css'], x.css()),
      lang('HTML', ['html', 'htm', 'xhtml'], x.html()),
      lang('Rust', ['rs', 'rust'], x.rust()),
      lang('SQL', ['sql', 'sqlite', 'postgresql', 'mysql'], x.sql()),
      lang('C++', ['cpp', 'c++', 'cc', 'cxx', 'hpp', 'c', 'h'], x.cpp()),
      lang('Java', ['java'], x.java()),
      lang('Go', ['go', 'golang'], x.go()),
      lang('XML', ['xml', 'svg', 'xsl'], x.xml()),
      lang('YAML', ['yaml', 'yml'], x.yaml()),
      lang('Shell', ['sh', 'bash', 'shell', 'zsh', 'console', 'shellscript'],
        new LanguageSupport(StreamLanguage.define(x.shell)))
    ]
    return x
  }, error => { languagesLoading = null; throw error })
  return languagesLoading
}

// The extras with every grammar ready, as the preview needs them: it
// highlights code blocks as it renders, without waiting.
export function loadPreviewLibraries () {
  return loadLanguages()
}

export function findLanguage (name) {
  if (!name) return null
  return LanguageDescription.matchLanguageName(codeLanguages, name.trim().split(/\s+/)[0], false)
}

// Headings sized, not underlined; inline marks shown as what they mean. The
// colours are the page's variables, so they follow the theme.
const markdownStyle = HighlightStyle.define([
  { tag: tags.heading1, fontSize: '1.6em', fontWeight: '700', lineHeight: '1.3' },
  { tag: tags.heading2, fontSize: '1.4em', fontWeight: '700', lineHeight: '1.3' },
  { tag: tags.heading3, fontSize: '1.22em', fontWeight: '700' },
  { tag: tags.heading4, fontSize: '1.1em', fontWeight: '700' },
  { tag: tags.heading5, fontSize: '1em', fontWeight: '700' },
  { tag: tags.heading6, fontSize: '1em', fontWeight: '700', color: 'var(--muted)' },
  { tag: tags.strong, fontWeight: '700' },
  { tag: tags.emphasis, fontStyle: 'italic' },
  { tag: tags.strikethrough, textDecoration: 'line-through' },
  { tag: tags.link, color: 'var(--accent)' },
  { tag: tags.url, color: 'var(--muted)' },
  { tag: tags.quote, color: 'var(--muted)' },
  { tag: tags.monospace, class: 'cm-md-code' },
  { tag: [tags.processingInstruction, tags.contentSeparator, tags.labelName], color: 'var(--muted)' }
])

// -- list continuation ------------------------------------------------------------
// Enter on a list item starts the next one with a marker (lang-markdown's
// insertNewlineContinueMarkup). Someone used to plain text types a marker
// there anyway: "- " on a line that already reads "- ". The line that Enter
// made is remembered, and a marker typed right after the one it inserted
// replaces it instead of nesting ("- - ").
const setContinued = StateEffect.define()
const continued = StateField.define({
  create: () => null,
  update (value, tr) {
    for (const effect of tr.effects) if (effect.is(setContinued)) return effect.value
    if (value === null || !tr.docChanged) return value
    // Kept while the line is the inserted marker and the start of another.
    const from = tr.changes.mapPos(value.from, -1)
    const line = tr.state.doc.lineAt(from)
    if (line.from !== from || !line.text.startsWith(value.text)) return null
    return /^[-*+]?$|^\d{1,9}[.)]?$/.test(line.text.slice(value.text.length)) ? { from, text: value.text } : null
  }
})

const LIST_MARKER = /^(.*?)([-*+]|\d{1,9}[.)])( \[[ xX]\])? $/
const TYPED_MARKER = /^([-*+]|\d{1,9}[.)])$/

function continueList (view) {
  if (!insertNewlineContinueMarkup(view)) return false
  const { state } = view
  const head = state.selection.main.head
  const line = state.doc.lineAt(head)
  const text = state.doc.sliceString(line.from, head)
  view.dispatch({ effects: setContinued.of(head === line.to && LIST_MARKER.test(text) ? { from: line.from, text } : null) })
  return true
}

const noDoubledMarker = EditorView.inputHandler.of((view, from, to, text) => {
  if (text !== ' ' || from !== to) return false
  const record = view.state.field(continued, false)
  if (!record) return false
  const line = view.state.doc.lineAt(from)
  if (line.from !== record.from || from !== line.to) return false
  const lineText = line.text
  if (!lineText.startsWith(record.text)) return false
  const typed = lineText.slice(record.text.length)
  if (!TYPED_MARKER.test(typed)) return false
  const prefix = LIST_MARKER.exec(record.text)[1]
  const insert = prefix + typed + ' '
  view.dispatch({
    changes: { from: line.from, to: line.to, insert },
    selection: { anchor: line.from + insert.length },
    effects: setContinued.of(null),
    userEvent: 'input.type'
  })
  return true
})

// -- formatting ---------------------------------------------------------------------
// Each toggles: wrapped text is unwrapped, anything else is wrapped, and an
// empty selection gets the marks with the cursor between them.
function toggleMark (mark) {
  return view => {
    const { state } = view
    const doc = state.doc
    const m = mark.length
    view.dispatch(state.changeByRange(range => {
      const { from, to } = range
      const before = doc.sliceString(Math.max(0, from - m), from)
      const after = doc.sliceString(to, to + m)
      // "*" beside "**" is bold, not italic.
      const boldAround = mark === '*' && doc.sliceString(Math.max(0, from - 2), from) === '**' &&
        doc.sliceString(to, to + 2) === '**' && doc.sliceString(Math.max(0, from - 3), from) !== '***'
      if (before === mark && after === mark && !boldAround) {
        return {
          changes: [{ from: from - m, to: from }, { from: to, to: to + m }],
          range: EditorSelection.range(from - m, to - m)
        }
      }
      const inside = doc.sliceString(from, to)
      if (inside.length >= 2 * m && inside.startsWith(mark) && inside.endsWith(mark) &&
          !(mark === '*' && inside.startsWith('**') && !inside.startsWith('***'))) {
        return {
          changes: [{ from, to: from + m }, { from: to - m, to }],
          range: EditorSelection.range(from, to - 2 * m)
        }
      }
      return {
        changes: [{ from, insert: mark }, { from: to, insert: mark }],
        range: EditorSelection.range(from + m, to + m)
      }
    }), { userEvent: 'input.format', scrollIntoView: true })
    return true
  }
}

const LINK = /^\[([^\]\n]*)\]\(([^)\n]*)\)$/
const URLISH = /^(https?:\/\/|mailto:)\S+$/

function toggleLink (view) {
  const { state } = view
  const doc = state.doc
  view.dispatch(state.changeByRange(range => {
    const { from, to } = range
    const inside = doc.sliceString(from, to)
    const whole = LINK.exec(inside)
    if (whole) {
      return { changes: { from, to, insert: whole[1] }, range: EditorSelection.range(from, from + whole[1].length) }
    }
    // The text of a link selected: unwrap it.
    const lineEnd = doc.lineAt(to).to
    const tail = /^\]\([^)\n]*\)/.exec(doc.sliceString(to, lineEnd))
    if (from > 0 && doc.sliceString(from - 1, from) === '[' && tail) {
      return {
        changes: [{ from: from - 1, to: from }, { from: to, to: to + tail[0].length }],
        range: EditorSelection.range(from - 1, to - 1)
      }
    }
    if (URLISH.test(inside)) {
      const insert = '[](' + inside + ')'
      return { changes: { from, to, insert }, range: EditorSelection.cursor(from + 1) }
    }
    const insert = '[' + inside + '](https://)'
    const urlFrom = from + inside.length + 3
    return { changes: { from, to, insert }, range: EditorSelection.range(urlFrom, urlFrom + 'https://'.length) }
  }), { userEvent: 'input.format', scrollIntoView: true })
  return true
}

export const bold = toggleMark('**')
export const italic = toggleMark('*')
export const inlineCode = toggleMark('`')
export { toggleLink as link }

// The Markdown language, first without the grammars of code blocks, then
// with them once they have come.
const language = new Compartment()
const FENCE = /^ {0,3}(```|~~~)/m
let coloured = false

function colourCodeBlocks (view) {
  if (coloured) return
  coloured = true
  loadLanguages().then(
    () => view.dispatch({ effects: language.reconfigure(markdown({ base: markdownLanguage, codeLanguages })) }),
    error => { coloured = false; console.error('the grammars of code blocks could not be loaded', error) })
}

// Fetches the grammars after the first paint of a document with a fenced
// block, or when a fence is typed.
const codeBlockWatch = ViewPlugin.fromClass(class {
  constructor (view) {
    requestAnimationFrame(() => setTimeout(() => { if (FENCE.test(view.state.doc.toString())) colourCodeBlocks(view) }))
  }

  update (update) {
    if (coloured || !update.docChanged) return
    update.changes.iterChanges((fromA, toA, fromB, toB, inserted) => {
      if (!coloured && /`|~/.test(inserted.toString()) && FENCE.test(update.state.doc.toString())) colourCodeBlocks(update.view)
    })
  }
})

// What the editor adds for Markdown.
export function markdownEditing () {
  return [
    // Before markdown(), whose own keymap (Enter too) has the same precedence.
    Prec.high(keymap.of([
      { key: 'Enter', run: continueList },
      { key: 'Mod-b', run: bold, preventDefault: true },
      { key: 'Mod-i', run: italic, preventDefault: true },
      { key: 'Mod-k', run: toggleLink, preventDefault: true },
      { key: 'Mod-e', run: inlineCode, preventDefault: true },
      { key: 'Mod-`', run: inlineCode, preventDefault: true }
    ])),
    language.of(markdown({ base: markdownLanguage })),
    codeBlockWatch,
    syntaxHighlighting(markdownStyle),
    syntaxHighlighting(classHighlighter),
    continued,
    noDoubledMarker
  ]
}
