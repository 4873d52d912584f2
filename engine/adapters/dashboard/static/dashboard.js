// The dashboard's only script: local times (UTC stays in the tooltip), ticking durations, and
// keyboard moves between incidents. Loaded as a file: the Content-Security-Policy forbids inline code.
(function () {
  "use strict";
  var pad = function (n) { return (n < 10 ? "0" : "") + n; };

  function localTime(d) {
    var zone = "";
    try {
      zone = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
        .formatToParts(d).filter(function (p) { return p.type === "timeZoneName"; })[0].value;
    } catch (e) { zone = ""; }
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + (zone ? " " + zone : "");
  }

  function duration(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var d = Math.floor(s / 86400); s -= d * 86400;
    var h = Math.floor(s / 3600); s -= h * 3600;
    var m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + pad(m) + "m";
    if (m) return m + "m " + pad(s) + "s";
    return s + "s";
  }

  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) return;
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      el.title = el.textContent.trim();  // the server wrote UTC
      el.textContent = localTime(d);
      el.dataset.local = "1";
    });
  }

  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = duration(now - parseFloat(el.dataset.since));
    });
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = parseFloat(el.dataset.deadline) - now;
      el.textContent = left > 0 ? "in " + duration(left) : "breached " + duration(-left) + " ago";
      el.classList.toggle("over", left <= 0);
    });
  }

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("table.incidents a.open")); }

  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (ev.key === "j" || ev.key === "k") {
      var links = rows();
      if (!links.length) return;
      var i = links.indexOf(document.activeElement);
      i = ev.key === "j" ? Math.min(links.length - 1, i + 1) : Math.max(0, i < 0 ? 0 : i - 1);
      links[i].focus();
      ev.preventDefault();
    } else if (ev.key === "/") {
      var f = document.getElementById("filter-priority");
      if (f) { f.focus(); ev.preventDefault(); }
    }
  });

  // Filters: empty choices stay out of the URL, so a bookmarked or shared link reads clean.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.classList || !form.classList.contains("filters")) return;
    form.querySelectorAll("select, input").forEach(function (el) {
      if (el.name && !el.value) el.disabled = true;
    });
    setTimeout(function () {
      form.querySelectorAll("[disabled]").forEach(function (el) { el.disabled = false; });
    }, 0);
  });

  document.addEventListener("DOMContentLoaded", function () { localize(document); tick(); });
  document.addEventListener("htmx:afterSwap", function () { localize(document); tick(); });
  // A swapped-in list keeps the keyboard position: focus goes back to the same incident.
  var focused = null;
  document.addEventListener("htmx:beforeSwap", function () {
    var a = document.activeElement;
    focused = a && a.classList && a.classList.contains("open") ? a.getAttribute("href") : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!focused) return;
    var again = document.querySelector('table.incidents a.open[href="' + focused.replace(/"/g, "") + '"]');
    if (again) again.focus();
    focused = null;
  });
  setInterval(tick, 1000);
})();
