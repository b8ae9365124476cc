// Entry of the vendored browser bundle: what the editor needs to paint
// (extras.js holds what can wait). Rebuild with `npm ci && npm run build`
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
