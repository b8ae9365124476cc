// The pages' colour theme: "auto" follows the system's light or dark
// preference, "light" and "dark" are chosen by hand in the bar and
// remembered in this browser (localStorage "meshpad:theme").
//
// Loaded as a classic script at the top of every page's <head>, so the theme
// is set on <html> before anything is painted (the pages' CSP allows no
// inline script). The CSS reads html[data-theme], and falls back to the
// system's preference when this script does not run.
(function () {
  'use strict'
  var KEY = 'meshpad:theme'
  var CHOICES = ['auto', 'light', 'dark']
  var media = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null

  function chosen () {
    var value = null
    try { value = localStorage.getItem(KEY) } catch (_) { value = null }
    return CHOICES.indexOf(value) >= 0 ? value : 'auto'
  }

  function apply (choice) {
    var dark = choice === 'dark' || (choice === 'auto' && media !== null && media.matches)
    var root = document.documentElement
    root.dataset.theme = dark ? 'dark' : 'light'
    root.dataset.themeChoice = choice
    var select = document.getElementById('theme-choice')
    if (select && select.value !== choice) select.value = choice
  }

  function choose (choice) {
    try { localStorage.setItem(KEY, choice) } catch (_) {}
    apply(choice)
  }

  apply(chosen())
  if (media !== null && media.addEventListener) media.addEventListener('change', function () { apply(chosen()) })
  // Another tab changed it.
  window.addEventListener('storage', function (event) { if (event.key === KEY) apply(chosen()) })
  document.addEventListener('DOMContentLoaded', function () {
    var select = document.getElementById('theme-choice')
    if (!select) return
    select.value = chosen()
    select.addEventListener('change', function () { choose(select.value) })
  })
  window.meshpadTheme = { chosen: chosen, choose: choose }
})()
