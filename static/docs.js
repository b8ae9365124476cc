// The documents list and the Trash: their forms (delete, restore, delete
// forever) say who acts, in their field "by", with the name this browser's
// person gave in the editor (localStorage "meshpad:user"). Without script
// the forms work the same, and the peer records no name.
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
