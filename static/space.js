// A space's page: its forms act through the JSON API (server/space_pages.py)
// without reloading where they can. A form says what it calls in
// data-api ("METHOD URL") and what follows in data-then: "role" (a
// member's role changed: say so), "invite" (show the invite to copy) or
// "reload" (a removal or a seal: the page shows the space as it is now),
// "renamed" (the page of the space under its new name).
// Without script the same forms post to the page's own handlers.
const problem = document.getElementById('space-problem')
const status = document.getElementById('space-status')

function say (text) {
  problem.hidden = true
  status.textContent = text
  status.hidden = false
}

function refuse (text) {
  status.hidden = true
  problem.textContent = text
  problem.hidden = false
}

function prose (text) {
  const plain = String(text || '').replace(/`/g, '')
  return plain.charAt(0).toUpperCase() + plain.slice(1) + (/[.!?]$/.test(plain) ? '' : '.')
}

async function call (form) {
  const [method, url] = form.dataset.api.split(' ')
  const body = {}
  for (const [key, value] of new FormData(form)) body[key] = value
  const init = { method, headers: { Accept: 'application/json' } }
  if (method !== 'DELETE') {
    init.headers['Content-Type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  const resp = await fetch(url, init)
  let answer = {}
  try {
    answer = await resp.json()
  } catch (_) {
    answer = {}
  }
  if (!resp.ok) throw new Error(answer.error || `the peer answered HTTP ${resp.status}`)
  return { answer, body }
}

const then = {
  role (form, answer, body) {
    const select = form.elements.role
    select.dataset.current = body.role
    const row = form.closest('tr')
    row.dataset.role = body.role
    const who = row.querySelector('td').firstChild.textContent.trim()
    say(`${who} is now a ${body.role}. The change reaches the other members over their links.`)
  },
  invite (form, answer) {
    const field = document.getElementById('invite')
    field.value = answer.invite
    document.getElementById('invite-role').textContent = answer.role
    const warning = document.getElementById('invite-warning')
    warning.textContent = answer.warning ? prose(answer.warning) : ''
    warning.hidden = !answer.warning
    document.getElementById('invite-result').hidden = false
    field.focus()
    field.select()
    problem.hidden = true
  },
  renamed (form, answer) {
    location.assign('/spaces/' + encodeURIComponent(answer.name))
  },
  reload () {
    location.reload()
  }
}

for (const form of document.querySelectorAll('form[data-api]')) {
  form.addEventListener('submit', async event => {
    event.preventDefault()
    const buttons = form.querySelectorAll('button')
    for (const b of buttons) b.disabled = true
    try {
      const { answer, body } = await call(form)
      then[form.dataset.then](form, answer, body)
    } catch (err) {
      refuse(prose(err.message))
      const select = form.elements.role
      if (select && select.dataset.current) select.value = select.dataset.current
    } finally {
      for (const b of buttons) b.disabled = false
    }
  })
}

// A role changes as soon as it is chosen: the fallback buttons go.
for (const form of document.querySelectorAll('form.role-form')) {
  for (const button of form.querySelectorAll('.no-script')) button.hidden = true
  form.elements.role.addEventListener('change', () => form.requestSubmit())
}

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
