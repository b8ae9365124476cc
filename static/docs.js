// The documents list and the Trash.
//
// Their forms (delete, restore, delete forever) say who acts, in their
// field "by", with the name this browser's person gave in the editor
// (localStorage "meshpad:user"). Without script the forms work the same,
// and the peer records no name.
//
// On the documents list: times read "3 minutes ago" (Intl.RelativeTimeFormat,
// refreshed every half minute, the exact time in the title), and the search
// box, the sort controls, the sort headers and the page links fetch the
// list alone (GET /?…&partial=1) and swap it in, without reloading the
// page: a search runs as it is typed (debounced), and the focus stays where
// it was. Without script the same form and links load whole pages.
//
// Spaces: the list's Space filter, and the Space choice of the New document
// and Import forms (the spaces this peer may write in), come with the page
// when the peer gives them; else they are filled here from GET /api/spaces.
function person () {
  try {
    const user = JSON.parse(localStorage.getItem('meshpad:user'))
    return user && typeof user.name === 'string' ? user.name.trim().slice(0, 80) : ''
  } catch (_) {
    return '' // not JSON: no name
  }
}

function sign (form) {
  const field = form.elements && form.elements.by
  if (field) field.value = person()
}

for (const form of document.forms) sign(form)
// Signed again as it is sent: the name may have changed in another tab.
document.addEventListener('submit', event => sign(event.target))

// -- relative times ------------------------------------------------------------

const lang = document.documentElement.lang || undefined
const relative = new Intl.RelativeTimeFormat(lang, { numeric: 'auto' })
const exact = new Intl.DateTimeFormat(lang, { dateStyle: 'full', timeStyle: 'long' })
// (up to how many seconds, unit, seconds in the unit): server/pages.py ago()
const STEPS = [
  [45 * 60, 'minute', 60], [22 * 3600, 'hour', 3600], [26 * 86400, 'day', 86400],
  [320 * 86400, 'month', 30.44 * 86400], [Infinity, 'year', 365.25 * 86400]
]

export function ago (when, now = Date.now()) {
  const delta = (when - now) / 1000
  if (Math.abs(delta) < 45) return relative.format(0, 'second')
  const [, unit, size] = STEPS.find(([limit]) => Math.abs(delta) < limit)
  const n = Math.max(1, Math.round(Math.abs(delta) / size))
  return relative.format(delta < 0 ? -n : n, unit)
}

function refreshTimes (root = document) {
  const now = Date.now()
  for (const time of root.querySelectorAll('time[data-relative]')) {
    const when = Date.parse(time.dateTime)
    if (Number.isNaN(when)) continue
    time.textContent = ago(when, now)
    time.title = exact.format(when)
  }
}

refreshTimes()
setInterval(refreshTimes, 30_000)

// -- search, sort and pages without reloading -----------------------------------

// -- the spaces' choices ---------------------------------------------------------

// Fill the selects from the peer's list of spaces (``spaces``: name, role,
// writable): every space for the filter, the writable ones for the forms.
export function fillSpaces (spaces, chosen = '') {
  const writable = spaces.filter(s => s.writable)
  const filter = document.getElementById('list-space')
  if (filter) {
    const current = filter.value || chosen
    filter.replaceChildren(new Option('Every space', ''))
    for (const s of spaces) {
      filter.append(new Option(s.name + (s.role === 'reader' ? ' (read only)' : ''), s.name, false, s.name === current))
    }
    filter.value = spaces.some(s => s.name === current) ? current : ''
    document.getElementById('list-space-choice').hidden = spaces.length < 2
  }
  for (const select of document.querySelectorAll('select[data-spaces="writable"]')) {
    const pick = writable.some(s => s.name === chosen) ? chosen : (writable[0] ? writable[0].name : '')
    select.replaceChildren(...writable.map(s => new Option(s.name, s.name, false, s.name === pick)))
    select.value = pick
    select.disabled = writable.length < 2
    select.closest('[data-space-choice]').hidden = writable.length < 2
  }
}

const form = document.getElementById('list-query')
if (form && form.dataset.spacesKnown === 'false') {
  const chosen = new URLSearchParams(location.search).get('space') || ''
  fetch('/api/spaces', { cache: 'no-store' })
    .then(resp => resp.ok ? resp.json() : Promise.reject(new Error('HTTP ' + resp.status)))
    .then(spaces => fillSpaces(spaces, chosen))
    .catch(() => {}) // the forms still work: the peer picks the space where it has one to pick
}
const status = document.getElementById('list-status')
const SEARCH_DELAY = 250 // ms after the last key

if (form && status) {
  const box = form.elements.q
  const sort = form.elements.sort
  const order = form.elements.order
  const space = document.getElementById('list-space')
  let controller = null
  let timer = null

  // The address of the list the form asks for (defaults left out, as the
  // server writes them).
  const formUrl = () => {
    const params = new URLSearchParams()
    if (box.value.trim()) params.set('q', box.value.trim())
    if (sort.value !== 'name') params.set('sort', sort.value)
    const fallback = sort.value === 'name' ? 'asc' : 'desc'
    if (order.value !== fallback) params.set('order', order.value)
    if (space && space.value) params.set('space', space.value)
    const query = params.toString()
    return query ? `/?${query}` : '/'
  }

  // Fetch the list at *url* and swap it in. *focus*: which link of the new
  // list takes the focus (the one the person used), else the summary.
  const show = async (url, { push = false, focus = null } = {}) => {
    if (controller) controller.abort()
    controller = new AbortController()
    const partial = new URL(url, location.href)
    partial.searchParams.set('partial', '1')
    let html
    try {
      const resp = await fetch(partial, { signal: controller.signal, headers: { Accept: 'text/html' } })
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`)
      html = await resp.text()
    } catch (err) {
      if (err.name === 'AbortError') return
      location.assign(url) // the page itself says what went wrong
      return
    }
    const fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('results')
    const current = document.getElementById('results')
    if (!fresh || !current) return
    current.replaceWith(fresh)
    for (const f of fresh.querySelectorAll('form')) sign(f)
    refreshTimes(fresh)
    // The form follows what a header link chose.
    if (sort.value !== fresh.dataset.sort) sort.value = fresh.dataset.sort
    if (order.value !== fresh.dataset.order) order.value = fresh.dataset.order
    if (space && space.value !== fresh.dataset.space) space.value = fresh.dataset.space || ''
    // A new document goes, by default, in the space the list shows.
    for (const select of document.querySelectorAll('select[data-spaces="writable"]')) {
      if ([...select.options].some(o => o.value === fresh.dataset.space)) select.value = fresh.dataset.space
    }
    const address = fresh.dataset.url
    if (push) history.pushState({ list: address }, '', address)
    else history.replaceState({ list: address }, '', address)
    status.textContent = fresh.querySelector('#list-summary').textContent.trim()
    if (focus) {
      const target = fresh.querySelector(`[data-list-link="${focus}"]`) || fresh.querySelector('#list-summary')
      target.focus()
    }
  }

  box.addEventListener('input', () => {
    clearTimeout(timer)
    timer = setTimeout(() => show(formUrl()), SEARCH_DELAY)
  })
  box.addEventListener('search', () => { // the clear button of a search box
    clearTimeout(timer)
    show(formUrl())
  })
  sort.addEventListener('change', () => {
    order.value = sort.value === 'name' ? 'asc' : 'desc'
    show(formUrl())
  })
  order.addEventListener('change', () => show(formUrl()))
  if (space) space.addEventListener('change', () => show(formUrl()))
  form.addEventListener('submit', event => {
    event.preventDefault()
    clearTimeout(timer)
    show(formUrl())
  })
  document.addEventListener('click', event => {
    const link = event.target.closest && event.target.closest('#results a[data-list-link]')
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return
    event.preventDefault()
    show(link.getAttribute('href'), { push: true, focus: link.dataset.listLink })
  })
  window.addEventListener('popstate', event => {
    if (!event.state || !event.state.list) return
    const params = new URL(event.state.list, location.href).searchParams
    box.value = params.get('q') || ''
    if (space) space.value = params.get('space') || ''
    show(event.state.list)
  })
  history.replaceState({ list: document.getElementById('results').dataset.url }, '', location.href)
}
