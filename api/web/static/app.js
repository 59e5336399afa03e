// DataEngine web app: keyboard-first ranking with drag and undo, and the markdown preview.
// Plain JavaScript, no build step. Pages work without it (rank selects, no preview).
"use strict";
(function () {
  document.documentElement.classList.add("js");
  var csrf = function () { var i = document.querySelector("input[name=csrf]"); return i ? i.value : ""; };

  // ---------------------------------------------------------------- markdown preview
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("[data-action=preview]");
    if (!b) return;
    var area = b.form.querySelector("textarea[data-preview]");
    var out = document.getElementById(area.dataset.preview);
    var body = new FormData(); body.append("text", area.value);
    fetch("/preview", { method: "POST", body: body, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) { out.innerHTML = html; });  // server-rendered, raw HTML escaped
  });

  // ---------------------------------------------------------------- ranking
  var list = document.getElementById("ranking");
  if (!list) return;
  var form = list.closest("form");
  var items = function () { return Array.prototype.slice.call(list.querySelectorAll(".candidate")); };
  var placed = 0, history = [];
  var snapshot = function () { history.push({ order: items().map(function (li) { return li.dataset.id; }), placed: placed }); };
  var render = function (order) {
    var byId = {}; items().forEach(function (li) { byId[li.dataset.id] = li; });
    order.forEach(function (id) { list.appendChild(byId[id]); });
    items().forEach(function (li, i) { li.classList.toggle("placed", i < placed); });
  };
  var undo = function () { var s = history.pop(); if (s) { placed = s.placed; render(s.order); } };
  var place = function (key) {
    var li = list.querySelector('.candidate[data-key="' + key + '"]');
    if (!li) return;
    var order = items();
    if (order.indexOf(li) < placed) return;  // already placed: undo to change it
    snapshot();
    list.insertBefore(li, order[placed] || null);
    placed += 1;
    render(items().map(function (x) { return x.dataset.id; }));
    li.focus();
  };
  var move = function (li, delta) {
    var order = items(), i = order.indexOf(li), j = i + delta;
    if (j < 0 || j >= order.length) return;
    snapshot();
    if (delta < 0) list.insertBefore(li, order[j]); else list.insertBefore(order[j], li);
    placed = Math.max(placed, Math.max(i, j) + 1);
    render(items().map(function (x) { return x.dataset.id; }));
    li.focus();
  };
  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    var focused = document.activeElement && document.activeElement.closest && document.activeElement.closest(".candidate");
    if (/^[1-9]$/.test(ev.key) && !ev.ctrlKey && !ev.metaKey && !ev.altKey) { place(ev.key); ev.preventDefault(); }
    else if (ev.key === "Backspace" || ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z")) { undo(); ev.preventDefault(); }
    else if (ev.key === "ArrowUp" || ev.key === "ArrowDown") {
      var d = ev.key === "ArrowUp" ? -1 : 1, order = items();
      if (ev.shiftKey && focused) move(focused, d);
      else { var k = focused ? order.indexOf(focused) + d : 0; if (order[k]) order[k].focus(); }
      ev.preventDefault();
    } else if (ev.key === "Enter" && !(t && t.tagName === "BUTTON")) { form.requestSubmit(); ev.preventDefault(); }
  });
  form.querySelector("[data-action=undo]").addEventListener("click", undo);
  var dragged = null;
  list.addEventListener("dragstart", function (ev) { dragged = ev.target.closest(".candidate"); dragged.classList.add("dragging"); snapshot(); });
  list.addEventListener("dragend", function () { if (dragged) dragged.classList.remove("dragging"); dragged = null; });
  list.addEventListener("dragover", function (ev) {
    ev.preventDefault();
    var over = ev.target.closest(".candidate");
    if (!dragged || !over || over === dragged) return;
    var r = over.getBoundingClientRect();
    list.insertBefore(dragged, ev.clientY > r.top + r.height / 2 ? over.nextSibling : over);
  });
  list.addEventListener("drop", function (ev) {
    ev.preventDefault();
    placed = items().length;
    render(items().map(function (x) { return x.dataset.id; }));
  });
  form.addEventListener("submit", function () {
    form.querySelector("input[name=ranking]").value = items().map(function (li) { return li.dataset.id; }).join(",");
  });
})();
