// The Peers page: refreshes its table in place (never the whole page, so
// what is being typed in the form stays), and copies the invite.
const box = document.getElementById('peer-table')
const note = document.getElementById('refresh-note')
const every = Number(box.dataset.refreshSeconds || 2) * 1000
let refreshes = 0
let last = null

async function refresh () {
  try {
    const resp = await fetch('/peers/table', { cache: 'no-store', headers: { Accept: 'text/html' } })
    if (!resp.ok) throw new Error('HTTP ' + resp.status)
    const html = await resp.text()
    if (html !== last) {
      box.innerHTML = html // this peer's own fragment, escaped by its template
      last = html
    }
    refreshes += 1
    box.dataset.refreshes = String(refreshes)
    note.textContent = 'Updated every ' + every / 1000 + ' seconds.'
    note.classList.remove('warning')
  } catch (err) {
    note.textContent = 'The peer is not responding; the table shows what it said last.'
    note.classList.add('warning')
  }
  setTimeout(refresh, every)
}
setTimeout(refresh, every)

for (const button of document.querySelectorAll('button[data-copies]')) {
  button.addEventListener('click', async () => {
    const field = document.getElementById(button.dataset.copies)
    field.select()
    let copied = false
    try {
      await navigator.clipboard.writeText(field.value)
      copied = true
    } catch (_) {
      copied = document.execCommand('copy')
    }
    button.textContent = copied ? 'Copied' : 'Select and copy it'
    setTimeout(() => { button.textContent = 'Copy' }, 2000)
  })
}
