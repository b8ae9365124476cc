// A document's life, as the editor shows it: its name, the Rename and Delete
// controls of the bar, and the banner of a document deleted while open.
//
// The page knows the document by its key, which never changes (the peer is
// reached at /ws/{key}); the name is what people see. It lives in the
// document itself (root map "meshpad:meta", key "name"; absent: the key is
// the name), so a rename made anywhere reaches this page with the text, and
// the title, the URL and the links follow it. Until the page has synced with
// the peer, the name the peer put in the page stands: this browser's own copy
// may be older.
//
// URLs name the document by its ref: its name, or name@space where another
// space holds the same name (server/spaces.py). A rename keeps the @space of
// a ref that had it, and adds it on a peer of several spaces unless the
// document is in the first one (a plain name means the first space's).
//
// A reader's editor (or a removed member's) has no Rename nor Delete.
//
// When the document is deleted (moved to the Trash, or deleted forever) the
// peer closes the connection with CLOSE_DELETED and says who did it. The page
// stops connecting and the editor becomes read-only; what this browser holds
// stays in IndexedDB, and goes back to the peer if the document is restored.
export const CLOSE_DELETED = 4410 // crdt/engine.py
const META = 'meshpad:meta'
const NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$/ // crdt/names.py

// A ref as a URL path segment: its name and its space, each encoded.
export function refPath (ref) {
  const at = ref.lastIndexOf('@')
  if (at < 0) return encodeURIComponent(ref)
  return encodeURIComponent(ref.slice(0, at)) + '@' + encodeURIComponent(ref.slice(at + 1))
}

export function setupLife ({
  key, name, ref = name, space = '', spacesCount = 1, firstSpace = false, readOnlyFromStart = false,
  ydoc, user, isSynced, readOnly
}) {
  const meta = ydoc.getMap(META)
  const nameEl = document.getElementById('docname')
  const renameToggle = document.getElementById('rename-toggle')
  const renameForm = document.getElementById('rename-form')
  const renameInput = document.getElementById('rename-input')
  const renameProblem = document.getElementById('rename-problem')
  const deleteToggle = document.getElementById('delete-toggle')
  const deleteConfirm = document.getElementById('delete-confirm')
  const deleteYes = document.getElementById('delete-yes')
  const deleteProblem = document.getElementById('delete-problem')
  const banner = document.getElementById('deleted')
  let current = name
  // Whether URLs say the space: the page's ref did; after a rename, also on a
  // peer of several spaces where this one may not be the first.
  let qualified = ref.lastIndexOf('@') >= 0
  const currentRef = () => qualified ? current + '@' + space : current
  let leaving = false // this page deleted the document and goes to the list
  let gone = null // why the document cannot be edited any more

  const api = () => '/api/docs/' + refPath(currentRef())

  function nameInDocument () {
    const value = meta.get('name')
    return typeof value === 'string' && NAME.test(value) ? value : key
  }

  // -- the name ------------------------------------------------------------------
  function show (newName) {
    if (newName !== current && spacesCount > 1 && !firstSpace && space) qualified = true
    current = newName
    const path = '/doc/' + refPath(currentRef())
    document.title = newName + ' · Meshpad'
    nameEl.textContent = newName
    for (const link of document.querySelectorAll('[data-doc-path]')) link.href = path + link.dataset.docPath
    for (const el of document.querySelectorAll('[data-doc-name]')) el.textContent = newName
    renameForm.action = path + '/rename'
    if (renameForm.hidden) renameInput.value = newName
    if (location.pathname !== path) history.replaceState(history.state, '', path + location.search + location.hash)
  }

  function follow () {
    if (!isSynced()) return
    const inDocument = nameInDocument()
    if (inDocument !== current) show(inDocument)
  }
  meta.observe(follow)

  // -- the bar's two forms: rename, and delete's confirmation -------------------
  function openOnly (which) {
    const rename = which === 'rename'
    const del = which === 'delete'
    renameForm.hidden = !rename
    deleteConfirm.hidden = !del
    renameToggle.setAttribute('aria-expanded', String(rename))
    deleteToggle.setAttribute('aria-expanded', String(del))
    if (!rename) {
      renameInput.value = current
      say(renameProblem, '')
    }
    if (!del) say(deleteProblem, '')
  }

  function say (el, text) {
    el.textContent = text
    el.hidden = !text
  }

  // The Move form (a plain form post: the page opens again in the new space).
  const moveToggle = document.getElementById('move-toggle')
  const moveForm = document.getElementById('move-form')
  if (moveToggle && moveForm) {
    moveToggle.addEventListener('click', () => {
      const opening = moveForm.hidden
      openOnly(null)
      moveForm.hidden = !opening
      moveToggle.setAttribute('aria-expanded', String(opening))
      if (opening) document.getElementById('move-space').focus()
    })
    document.getElementById('move-cancel').addEventListener('click', () => {
      moveForm.hidden = true
      moveToggle.setAttribute('aria-expanded', 'false')
      moveToggle.focus()
    })
  }

  renameToggle.addEventListener('click', () => {
    if (!renameForm.hidden) return openOnly(null)
    openOnly('rename')
    renameInput.focus()
    renameInput.select()
  })
  document.getElementById('rename-cancel').addEventListener('click', () => {
    openOnly(null)
    renameToggle.focus()
  })
  renameForm.addEventListener('submit', async event => {
    event.preventDefault()
    const wanted = renameInput.value.trim()
    if (wanted === current) return openOnly(null)
    say(renameProblem, '')
    let resp, body
    try {
      resp = await fetch(api() + '/rename', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: wanted })
      })
      body = await resp.json()
    } catch (err) {
      return say(renameProblem, 'The peer cannot be reached, so the document was not renamed.')
    }
    if (resp.status === 409) {
      return say(renameProblem, 'A document named “' + wanted + '” already exists: choose another name.')
    }
    if (!resp.ok) return say(renameProblem, 'Not renamed: ' + body.error)
    show(body.name)
    openOnly(null)
    renameToggle.focus()
  })

  if (readOnlyFromStart) {
    renameToggle.hidden = true
    deleteToggle.hidden = true
  }

  deleteToggle.addEventListener('click', () => {
    if (!deleteConfirm.hidden) return openOnly(null)
    openOnly('delete')
    deleteYes.focus()
  })
  document.getElementById('delete-cancel').addEventListener('click', () => {
    openOnly(null)
    deleteToggle.focus()
  })
  deleteYes.addEventListener('click', async () => {
    say(deleteProblem, '')
    const deleting = current
    leaving = true
    let resp, body
    try {
      resp = await fetch(api(), {
        method: 'DELETE',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ author: { name: user.name, color: user.color } })
      })
      body = await resp.json()
    } catch (err) {
      leaving = false
      return say(deleteProblem, 'The peer cannot be reached, so the document was not deleted.')
    }
    if (!resp.ok) {
      leaving = false
      return say(deleteProblem, 'Not deleted: ' + body.error)
    }
    const notice = '“' + deleting + '” was moved to the Trash.'
    location.assign('/?' + new URLSearchParams({ notice, undo: qualified ? deleting + '@' + space : deleting }))
  })

  for (const form of [renameForm, deleteConfirm]) {
    form.addEventListener('keydown', event => {
      if (event.key !== 'Escape') return
      openOnly(null)
      ;(form === renameForm ? renameToggle : deleteToggle).focus()
    })
  }

  // -- deleted while open ----------------------------------------------------------
  // *reason* is the peer's, e.g. "this document was deleted by Alice".
  function deleted (reason) {
    if (gone !== null) return
    gone = reason || 'this document was deleted'
    readOnly()
    openOnly(null)
    renameToggle.disabled = true
    deleteToggle.disabled = true
    if (leaving) return // this page did it, and is on its way to the list
    const forever = /forever/.test(gone)
    document.getElementById('deleted-text').textContent = gone.charAt(0).toUpperCase() + gone.slice(1) + '.'
    document.getElementById('deleted-detail').textContent = forever
      ? 'It is gone from every peer, and the editor is read-only. What this page shows is kept in this browser only: export it to keep it.'
      : 'The editor is read-only. Nothing is lost: what you typed is kept in this browser, and goes back to the peer if the document is restored from the Trash.'
    banner.hidden = false
    window.scrollTo({ top: 0 }) // the banner heads the page: a long document may be scrolled far from it
  }

  return {
    name: () => current,
    ref: currentRef,
    gone: () => gone,
    follow,
    deleted
  }
}
