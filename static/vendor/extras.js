// The second entry of the vendored bundle, loaded only when needed: the
// grammars of code blocks (when a document has a fenced block in one of
// these languages, or the preview opens) and the preview's renderer and
// sanitiser. esbuild puts what it shares with entry.js (CodeMirror, Lezer)
// in a chunk of its own, so both use one copy of it.

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
