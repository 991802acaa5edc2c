(function () {
  "use strict";
  // The per-case table of the llmops HTML report. Every text from the run record is set with
  // textContent (never as markup), so an output holding "<script>" shows as those characters.
  var data = JSON.parse(document.getElementById("case-data").textContent);
  var metrics = data.metrics, cases = data.cases, compared = data.compared;
  var tbody = document.getElementById("case-rows");
  var search = document.getElementById("search"), metricSel = document.getElementById("metric");
  var showSel = document.getElementById("show"), sortSel = document.getElementById("sort");
  var count = document.getElementById("count"), more = document.getElementById("more");
  var PAGE = 200, limit = PAGE, open = {};
  var ncol = compared ? 8 : 5;

  cases.forEach(function (c, i) {
    c.order = i;
    c.hay = [c.id, c.q, c.c || "", c.b || "", (c.ref || []).join(" "), c.err || "", c.why || ""].join("\n").toLowerCase();
  });

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fmt(v, m, signed) {
    if (v === null || v === undefined) return "\u2014";
    var s;
    if (m.unit) s = String(Number(v.toPrecision(4)));
    else s = v.toFixed(m.scale > 1 ? 2 : 4);
    return signed && v >= 0 ? "+" + s : s;
  }

  var home = Math.max(0, metrics.findIndex(function (m) { return m.name === data.metric; }));
  if (compared) metricSel.appendChild(new Option("any (largest fall)", "-1"));
  metrics.forEach(function (m, i) { metricSel.appendChild(new Option(m.name, String(i))); });
  metricSel.value = compared ? "-1" : String(home);

  function hasChange(c) { return c.dm !== undefined && c.dm !== null; }

  // "any": each changed case on the metric the gate ranked it by, the others on the table's own metric
  function metricOf(c, mi) { return mi >= 0 ? mi : hasChange(c) ? c.dm : home; }

  // change in the metric's own units, oriented so that positive is better (a fall is negative)
  function gain(c, mi) {
    if (!compared || c.only) return null;
    if (mi < 0) return c.d === undefined ? null : c.d;
    var s = c.s[mi], m = metrics[mi];
    if (s[0] === null || s[1] === null) return null;
    return m.higher ? s[1] - s[0] : s[0] - s[1];
  }

  function score(c, mi) { var s = c.s[metricOf(c, mi)]; return s ? s[s.length - 1] : null; }

  function keep(c, mi, q, show) {
    if (q && c.hay.indexOf(q) < 0) return false;
    if (show === "all") return true;
    if (show === "failed") return Boolean(c.err) || score(c, mi) === null;
    var g = gain(c, mi);
    if (show === "changed") return mi < 0 ? c.d !== undefined : g !== null && g !== 0;
    if (show === "worse") return g !== null && g < 0;
    return g !== null && g > 0;
  }

  function cmpNum(a, b, dir) {  // numbers first (ascending, or descending with dir -1), missing values last
    if (a === null && b === null) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    return dir * (a - b);
  }

  function sorted(list, mi, how) {
    var dir = how.charAt(0) === "-" ? -1 : 1, key = how.replace("-", "");
    return list.sort(function (a, b) {
      var r = 0;
      if (key === "change") r = cmpNum(gain(a, mi), gain(b, mi), dir);
      else if (key === "score") r = cmpNum(score(a, mi), score(b, mi), dir);
      else if (key === "id") r = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
      return r || a.order - b.order;
    });
  }

  function cell(tr, text, cls) { var td = el("td", cls, text); tr.appendChild(td); return td; }

  function row(c, mi) {
    var m = metrics[metricOf(c, mi)], s = c.s[metricOf(c, mi)] || [null, null];
    var tr = el("tr", "case" + (c.err ? " failed" : "") + (open[c.id] ? " open" : ""));
    tr.tabIndex = 0;
    tr.setAttribute("data-id", c.id);
    cell(tr, c.id, "id");
    cell(tr, c.q, "q");
    cell(tr, (c.ref || []).join(" | "), "ref");
    if (compared) {
      cell(tr, c.only ? "(not in the baseline)" : c.b === null || c.b === undefined ? "(no output: " + (c.berr || "error") + ")" : c.b, "out");
      cell(tr, c.c === null || c.c === undefined ? "(failed: " + (c.err || "no output") + ")" : c.c,
        "out" + (c.b !== c.c ? " changed" : ""));
      cell(tr, m ? fmt(s[0], m) : "\u2014", "num");
      cell(tr, m ? fmt(s[1], m) : "\u2014", "num");
      var g = gain(c, mi);
      var d = s[0] === null || s[1] === null ? null : s[1] - s[0];
      var td = cell(tr, m ? fmt(d, m, true) : "\u2014", "num" + (g === null || g === 0 ? "" : g < 0 ? " worse" : " better"));
      if (mi < 0 && m && hasChange(c)) td.insertBefore(el("span", "metric-name", m.name), td.firstChild);
    } else {
      cell(tr, c.c === null || c.c === undefined ? "(failed: " + (c.err || "no output") + ")" : c.c, "out");
      cell(tr, m ? fmt(s[0], m) : "\u2014", "num");
    }
    return tr;
  }

  function section(box, title) { box.appendChild(el("h4", null, title)); }

  function pre(box, text, cls) { box.appendChild(el("pre", cls, text)); }

  function detail(c) {
    var tr = el("tr", "detail"), td = el("td"), box = el("div", "detail-box");
    td.colSpan = ncol;
    section(box, "inputs");
    var dl = el("dl");
    dl.appendChild(el("dt", null, "question"));
    dl.appendChild(el("dd", null, c.q));
    Object.keys(c.in || {}).forEach(function (k) {
      var v = c.in[k];
      dl.appendChild(el("dt", null, k));
      dl.appendChild(el("dd", null, typeof v === "string" ? v : JSON.stringify(v)));
    });
    Object.keys(c.sl || {}).forEach(function (k) {
      dl.appendChild(el("dt", null, "slice " + k));
      dl.appendChild(el("dd", null, c.sl[k]));
    });
    box.appendChild(dl);
    section(box, "references");
    var ul = el("ul");
    (c.ref || []).forEach(function (r) { ul.appendChild(el("li", null, r)); });
    box.appendChild(ul);
    var outs = el("div", "side");
    if (compared) {
      var b = el("div"); b.appendChild(el("h4", null, "baseline output"));
      pre(b, c.only ? "(not in the baseline)" : c.b === null || c.b === undefined ? "(no output: " + (c.berr || "error") + ")" : c.b);
      outs.appendChild(b);
    }
    var o = el("div"); o.appendChild(el("h4", null, compared ? "candidate output" : "output"));
    pre(o, c.c === null || c.c === undefined ? "(failed: " + (c.err || "no output") + ")" : c.c);
    outs.appendChild(o);
    box.appendChild(outs);
    if (c.why) { section(box, "why it fell"); pre(box, c.why); }
    section(box, "scores");
    var t = el("table", "scores"), head = el("tr");
    (compared ? ["metric", "baseline", "candidate", "delta"] : ["metric", "score"]).forEach(function (h) { head.appendChild(el("th", null, h)); });
    t.appendChild(head);
    metrics.forEach(function (m, i) {
      var r = el("tr"), s = c.s[i];
      r.appendChild(el("th", null, m.name));
      s.forEach(function (v) { r.appendChild(el("td", "num", fmt(v, m))); });
      if (compared) r.appendChild(el("td", "num", s[0] === null || s[1] === null ? "\u2014" : fmt(s[1] - s[0], m, true)));
      t.appendChild(r);
    });
    box.appendChild(t);
    if (c.reasons) {
      section(box, "check reasons");
      var rl = el("ul");
      Object.keys(c.reasons).forEach(function (k) { rl.appendChild(el("li", null, k + ": " + c.reasons[k])); });
      box.appendChild(rl);
    }
    if (c.ch) {
      section(box, "retrieved chunks" + (c.bch ? " (the baseline retrieved " + c.bch.join(", ") + ")" : ""));
      c.ch.forEach(function (ch) {
        var q = el("blockquote");
        q.appendChild(el("div", "chunk-id", ch[0] + " \u00b7 score " + ch[1]));
        q.appendChild(el("div", null, data.chunks[ch[0]] !== undefined ? data.chunks[ch[0]] : "(text not recorded)"));
        box.appendChild(q);
      });
    }
    (c.j || []).forEach(function (j) {
      section(box, "judge " + j.n + (j.k ? " (repeat " + (j.k + 1) + ")" : "") + ": " +
        (j.v === null ? "unscored" : j.v + " \u2192 " + j.x) + (j.a === null ? "" : " \u00b7 agreement " + j.a));
      j.r.forEach(function (r, i) { pre(box, "sample " + (i + 1) + " (" + (r.v === null ? "no verdict" : r.v) + "):\n" + r.t, "judge"); });
    });
    td.appendChild(box);
    tr.appendChild(td);
    return tr;
  }

  function render() {
    var mi = Number(metricSel.value), q = search.value.trim().toLowerCase();
    var list = sorted(cases.filter(function (c) { return keep(c, mi, q, showSel.value); }), mi, sortSel.value);
    var frag = document.createDocumentFragment();
    list.slice(0, limit).forEach(function (c) {
      frag.appendChild(row(c, mi));
      if (open[c.id]) frag.appendChild(detail(c));
    });
    tbody.textContent = "";
    tbody.appendChild(frag);
    count.textContent = "showing " + Math.min(limit, list.length) + " of " + list.length + " matching (" + cases.length + " cases)";
    more.hidden = list.length <= limit;
  }

  function toggle(tr) {
    var id = tr.getAttribute("data-id");
    if (open[id]) delete open[id]; else open[id] = true;
    render();
  }

  tbody.addEventListener("click", function (e) {
    var tr = e.target.closest("tr.case");
    if (tr && !window.getSelection().toString()) toggle(tr);
  });
  tbody.addEventListener("keydown", function (e) {
    var tr = e.target.closest("tr.case");
    if (tr && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); toggle(tr); }
  });
  [search, metricSel, showSel, sortSel].forEach(function (x) {
    x.addEventListener("input", function () { limit = PAGE; render(); });
  });
  more.addEventListener("click", function () { limit += PAGE; render(); });
  var wanted = /^#case=(.+)$/.exec(window.location.hash);  // a link to one case opens it: report.html#case=<id>
  if (wanted) {
    open[decodeURIComponent(wanted[1])] = true;
    search.value = decodeURIComponent(wanted[1]);
  }
  render();
  if (wanted && tbody.firstChild) tbody.firstChild.scrollIntoView();
  document.body.setAttribute("data-cases-rendered", String(tbody.querySelectorAll("tr.case").length));
}());
