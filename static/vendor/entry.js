// Entry of the vendored browser bundle. Rebuild with `npm ci && npm run build`
// in this folder; the output's file name carries this package's version, so
// bump "version" in package.json (and the name in the build script and in
// server/assets.py) whenever the pinned libraries change.
export * as Y from 'yjs'
export { WebsocketProvider } from 'y-websocket'
export { IndexeddbPersistence } from 'y-indexeddb'
export { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'
export {
  EditorView, keymap, drawSelection, dropCursor, highlightActiveLine,
  highlightActiveLineGutter, highlightSpecialChars, lineNumbers, rectangularSelection,
  Decoration, ViewPlugin
} from '@codemirror/view'
export { EditorState, EditorSelection, StateField, StateEffect, RangeSetBuilder, Compartment, Prec } from '@codemirror/state'
export { defaultKeymap, indentWithTab } from '@codemirror/commands'
export {
  syntaxHighlighting, defaultHighlightStyle, HighlightStyle, bracketMatching, indentOnInput,
  LanguageDescription, LanguageSupport, StreamLanguage
} from '@codemirror/language'
export { searchKeymap, highlightSelectionMatches, search, openSearchPanel } from '@codemirror/search'
export { markdown, markdownLanguage, insertNewlineContinueMarkup, deleteMarkupBackward } from '@codemirror/lang-markdown'
export { tags, classHighlighter, highlightCode, tagHighlighter } from '@lezer/highlight'
export * as decoding from 'lib0/decoding'

// The languages of code blocks, highlighted alike in the editor and in the
// preview (one set of grammars for both).
export { javascript } from '@codemirror/lang-javascript'
export { python } from '@codemirror/lang-python'
export { json } from '@codemirror/lang-json'
export { css } from '@codemirror/lang-css'
export { html } from '@codemirror/lang-html'
export { rust } from '@codemirror/lang-rust'
export { sql } from '@codemirror/lang-sql'
export { cpp } from '@codemirror/lang-cpp'
export { java } from '@codemirror/lang-java'
export { go } from '@codemirror/lang-go'
export { xml } from '@codemirror/lang-xml'
export { yaml } from '@codemirror/lang-yaml'
export { shell } from '@codemirror/legacy-modes/mode/shell'

// The preview: markdown-it renders, DOMPurify sanitises.
export { default as MarkdownIt } from 'markdown-it'
export { default as DOMPurify } from 'dompurify'
