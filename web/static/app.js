// chatd's web page. It speaks the JSON protocol of /ws (the README's "Web" section): it sends
// what the person types exactly as an SSH user would type it, asks for state and history, and
// draws the events it receives. Every piece of text from the server reaches the page through
// textContent or a text node, never as markup; only http(s) URLs become links.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  // What one room keeps in memory (older lines can be fetched again), what one history request
  // asks for, and the reconnect back-off's bounds (milliseconds).
  const KEEP = 2000;
  const PAGE = 50;
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 30000;
  const GUEST_KEY = 'chatd.guest';
  const KINDS = new Set(['message', 'action', 'notice', 'info', 'error', 'dm']);

  const ui = {
    signin: $('signin'), signinForm: $('signin-form'), signinName: $('signin-name'),
    signinError: $('signin-error'),
    app: $('app'), roomName: $('room-name'), topic: $('topic'),
    rooms: $('rooms'), roomList: $('room-list'), toggleRooms: $('toggle-rooms'),
    members: $('members'), memberList: $('member-list'), toggleMembers: $('toggle-members'),
    me: $('me'), status: $('status'), reconnect: $('reconnect'), notify: $('notify'), signout: $('signout'),
    log: $('log'), composer: $('composer'), message: $('message'),
  };

  const st = {
    ws: null,
    guest: readGuest(),    // the guest name this tab signs in with; '' tries the session cookie
    me: '',
    registered: false,
    signedIn: false,       // a state line has arrived: the server has said who we are
    current: '',
    rooms: new Map(),      // name -> room, in the order the server lists them
    early: [],             // replies waiting for a state line to say the current room
    awaiting: 0,           // state requests not answered yet
    colours: new Map(),    // folded name -> xterm colour index, learned from events
    attempt: 0,            // reconnects since the last good connection
    retryTimer: 0,
    stateTimer: 0,
    resync: false,         // the next state line is the first after a reconnect
    away: new Map(),       // rooms we were in before a reconnect and are not back in yet
    stopped: false,        // the server ended the session on purpose: no reconnecting
  };

  // sessionStorage can be unavailable (some privacy modes): the page then just forgets on reload.
  function readGuest() {
    try { return sessionStorage.getItem(GUEST_KEY) || ''; } catch { return ''; }
  }
  function writeGuest(name) {
    try {
      if (name) sessionStorage.setItem(GUEST_KEY, name); else sessionStorage.removeItem(GUEST_KEY);
    } catch { /* see readGuest */ }
  }

  // Names are ASCII and compared ignoring case, as the server does.
  const fold = (s) => String(s).toLowerCase();

  function newRoom(name) {
    return {
      name, topic: '', members: [],
      events: [], seen: new Set(),  // sorted by time; seen holds their keys against duplicates
      unread: 0, mentioned: false,
      complete: false,               // no older history to fetch
      loading: 0,                    // when a history request went out, 0 when none is waiting
      resumeAfter: '',               // the newest time seen before the connection dropped
    };
  }
  function room(name) {
    let r = st.rooms.get(name);
    if (!r) { r = newRoom(name); st.rooms.set(name, r); }
    return r;
  }

  // ---- Colours: the SSH shell's xterm-256 index, made readable on this page's background. ----

  const BASE16 = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128],
    [0, 128, 128], [192, 192, 192], [128, 128, 128], [255, 0, 0], [0, 255, 0], [255, 255, 0],
    [0, 0, 255], [255, 0, 255], [0, 255, 255], [255, 255, 255]];

  function xterm(i) {
    if (i < 16) return BASE16[i];
    if (i < 232) {
      const c = i - 16;
      const level = (v) => (v ? 55 + 40 * v : 0);
      return [level(Math.floor(c / 36)), level(Math.floor(c / 6) % 6), level(c % 6)];
    }
    const g = 8 + 10 * (i - 232);
    return [g, g, g];
  }

  function luminance(rgb) {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(rgb[0]) + 0.7152 * f(rgb[1]) + 0.0722 * f(rgb[2]);
  }
  const BG = luminance([0x15, 0x17, 0x1c]); // --bg in app.css
  const cssColours = [];

  // cssColour lightens a dark palette entry (maroon, navy) toward white until it reaches the
  // WCAG contrast of 4.5 against the background, so every name stays legible.
  function cssColour(i) {
    if (!Number.isInteger(i) || i < 0 || i > 255) return '';
    if (!cssColours[i]) {
      let c = xterm(i);
      for (let k = 0; k < 12 && (luminance(c) + 0.05) / (BG + 0.05) < 4.5; k++) {
        c = c.map((v) => Math.round(v + (255 - v) * 0.2));
      }
      cssColours[i] = `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
    }
    return cssColours[i];
  }

  // ---- Building lines: createElement and text nodes only. ----

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // nameEl is a name in its colour. The colour is set through the CSSOM (element.style), which
  // the Content-Security-Policy allows; a style="" attribute in markup it would not.
  function nameEl(name, colour) {
    const s = el('span', 'from', name);
    const c = cssColour(colour ?? st.colours.get(fold(name)));
    if (c) s.style.color = c;
    return s;
  }

  // URLs end before whitespace and before characters that cannot be in one unescaped; trailing
  // punctuation is the sentence's, not the URL's.
  const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  const TRAILING = /[.,;:!?)\]}]+$/;

  function linkEl(text) {
    let u;
    try { u = new URL(text); } catch { return null; }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    const a = el('a', '', text);
    a.href = u.href;
    a.rel = 'noopener noreferrer';
    a.target = '_blank';
    return a;
  }

  function mentionRE() {
    if (!st.me) return null;
    const name = st.me.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
    return new RegExp(`(?<![A-Za-z0-9_])${name}(?![A-Za-z0-9_])`, 'gi');
  }

  // appendText adds text to parent, making http(s) URLs links, and marking mentions of us when
  // mark is set (someone else's message).
  function appendText(parent, text, mark) {
    let last = 0;
    for (const m of text.matchAll(URL_RE)) {
      const url = m[0].replace(TRAILING, '');
      const a = linkEl(url);
      if (!a) continue;
      appendMentions(parent, text.slice(last, m.index), mark);
      parent.append(a);
      last = m.index + url.length;
    }
    appendMentions(parent, text.slice(last), mark);
  }

  function appendMentions(parent, text, mark) {
    const re = mark ? mentionRE() : null;
    let last = 0;
    if (re) {
      for (const m of text.matchAll(re)) {
        parent.append(text.slice(last, m.index), el('mark', '', m[0]));
        last = m.index + m[0].length;
      }
    }
    parent.append(text.slice(last));
  }

  const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dated = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  const full = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

  function timeEl(ms) {
    const d = new Date(ms);
    const t = el('time', '', d.toDateString() === new Date().toDateString() ? clock.format(d) : dated.format(d));
    t.dateTime = d.toISOString();
    t.title = full.format(d);
    return t;
  }

  function lineEl(e) {
    const line = el('div', `line ${e.type}`);
    if (e.history) line.classList.add('history');
    const mention = mentions(e);
    if (mention) line.classList.add('mention');
    line.append(timeEl(e.t));
    const text = el('span', 'text');
    switch (e.type) {
      case 'message':
        line.append(nameEl(e.from, e.colour), ': ');
        break;
      case 'action':
        line.append('* ', nameEl(e.from, e.colour), ' ');
        break;
      case 'dm':
        // Clearly a private message, whichever room is on screen.
        line.append(el('span', 'tag', 'DM'));
        if (fold(e.from) === fold(st.me)) line.append('to ', nameEl(e.to), ': ');
        else line.append('from ', nameEl(e.from, e.colour), ': ');
        break;
      case 'notice':
        line.append('* ');
        break;
      case 'error':
        line.append('error: ');
        break;
    }
    appendText(text, e.text, mention);
    line.append(text);
    return line;
  }

  // ---- Events ----

  // normalise checks what the page relies on and adds t (milliseconds), the sort key. A line
  // without a usable time (a reply) is placed at the moment it arrived.
  function normalise(o) {
    if (!o || typeof o !== 'object' || !KINDS.has(o.type) || typeof o.text !== 'string') return null;
    const e = {
      type: o.type, text: o.text, history: o.history === true,
      room: typeof o.room === 'string' ? o.room : '',
      from: typeof o.from === 'string' ? o.from : '',
      to: typeof o.to === 'string' ? o.to : '',
      time: typeof o.time === 'string' ? o.time : '',
      colour: Number.isInteger(o.colour) ? o.colour : undefined,
      joined: Array.isArray(o.joined) ? o.joined.filter((n) => typeof n === 'string') : null,
      left: Array.isArray(o.left) ? o.left.filter((n) => typeof n === 'string') : null,
      others: Number.isInteger(o.others) && o.others > 0 ? o.others : 0,
      topic: typeof o.topic === 'string' ? o.topic : null,
    };
    const t = Date.parse(e.time);
    e.t = t > Date.UTC(2000, 0, 1) ? t : Date.now();
    return e;
  }

  // mentions reports whether someone else's message names us. It is asked when a line is drawn,
  // not when it arrives: the join's replay arrives before the server has said who we are.
  function mentions(e) {
    if (e.type !== 'message' && e.type !== 'action') return false;
    if (!st.me || fold(e.from) === fold(st.me)) return false;
    return mentionRE().test(e.text);
  }

  const keyOf = (e) => `${e.type}|${e.time}|${e.from}|${e.to}|${e.text}`;

  // insert puts e in time order and returns its index, or -1 for a line already there (the join
  // replay and a history fetch overlap after a reconnect).
  function insert(r, e) {
    const key = keyOf(e);
    if (e.time && r.seen.has(key)) return -1;
    if (e.time) r.seen.add(key);
    let i = r.events.length;
    while (i > 0 && r.events[i - 1].t > e.t) i--;
    r.events.splice(i, 0, e);
    if (trim(r) && r.name === st.current) ui.log.querySelector('.line')?.remove();
    return i;
  }

  // merge adds a history reply and returns how many of its lines were new. Times have only
  // milliseconds and a burst of lines can share one, so time alone cannot place a fetched line
  // among the ones already shown; but a reply is in the server's order and holds the lines of
  // its own bounds that we have too. Its order wins for those; the others (notices, replies)
  // are placed by time.
  function merge(r, batch) {
    const mine = new Map(r.events.filter((e) => e.time).map((e) => [keyOf(e), e]));
    const inBatch = new Set();
    let added = 0;
    const fetched = [];
    for (const e of batch) {
      const key = keyOf(e);
      if (inBatch.has(key)) continue;
      inBatch.add(key);
      if (!mine.has(key)) { added++; r.seen.add(key); }
      fetched.push(mine.get(key) || e); // a line shown live keeps its look
    }
    const rest = r.events.filter((e) => !e.time || !inBatch.has(keyOf(e)));
    const out = [];
    let i = 0;
    let j = 0;
    while (i < fetched.length || j < rest.length) {
      if (j >= rest.length || (i < fetched.length && fetched[i].t <= rest[j].t)) out.push(fetched[i++]);
      else out.push(rest[j++]);
    }
    r.events = out;
    while (trim(r));
    return added;
  }

  // trim drops the oldest line of a room over its bound.
  function trim(r) {
    if (r.events.length <= KEEP) return false;
    r.seen.delete(keyOf(r.events.shift()));
    r.complete = false;
    return true;
  }

  // roomFor is where an event is shown: its room, or (replies, DMs) the room on screen. While a
  // state request is out, a reply waits for its answer (see onState): the reply to a command
  // ("you are in #go now") belongs to the room the command made current.
  function roomFor(e) {
    if (e.room && e.type !== 'dm' && e.type !== 'info' && e.type !== 'error') return room(e.room);
    return st.current && st.awaiting === 0 ? room(st.current) : null;
  }

  function onEvent(e) {
    if (e.from && e.colour !== undefined) st.colours.set(fold(e.from), e.colour);
    if (e.type === 'notice' && e.room) presence(e);
    const r = roomFor(e);
    const dmIn = e.type === 'dm' && !e.history && fold(e.from) !== fold(st.me);
    if (!r) {
      st.early.push(e);
      if (dmIn) notify(e, null);
      return;
    }
    add(r, e);
    if (e.history) return;
    const counts = e.type === 'message' || e.type === 'action';
    const mention = mentions(e);
    if (counts && r.name !== st.current) {
      r.unread++;
      if (mention) r.mentioned = true;
      renderRooms();
    }
    if (mention || dmIn) notify(e, r);
  }

  function add(r, e) {
    const i = insert(r, e);
    if (i < 0 || r.name !== st.current) return;
    if (i === r.events.length - 1) {
      const stick = nearBottom() || fold(e.from) === fold(st.me);
      ui.log.append(lineEl(e));
      if (stick) scrollToBottom();
    } else {
      renderLog();
    }
  }

  // presence keeps member lists and topics current from notices, without asking the server;
  // any other notice (a kick, a rename, a room made private) may change more: ask for state.
  function presence(e) {
    const r = room(e.room);
    const me = fold(st.me);
    let aboutMe = false;
    for (const n of e.joined || []) {
      if (fold(n) === me) aboutMe = true;
      if (!r.members.some((m) => fold(m) === fold(n))) r.members.push(n);
    }
    if (e.left) {
      const gone = new Set(e.left.map(fold));
      if (gone.has(me)) aboutMe = true;
      r.members = r.members.filter((m) => !gone.has(fold(m)));
    }
    r.members.sort((a, b) => fold(a).localeCompare(fold(b)));
    if (e.topic !== null) r.topic = e.topic;
    // A join storm's notice names only some (others counts the rest): ask, a while later and
    // at a random moment, so that a thousand pages do not all ask at once.
    if (e.others > 0) askState(1000 + Math.random() * 4000);
    else if (aboutMe || (!e.joined && !e.left && e.topic === null)) askState();
    if (r.name === st.current) renderHeader();
  }

  function onState(s) {
    st.me = typeof s.name === 'string' ? s.name : st.me;
    st.registered = s.registered === true;
    const listed = Array.isArray(s.rooms) ? s.rooms.filter((x) => x && typeof x.name === 'string') : [];
    const rooms = new Map();
    for (const x of listed) {
      const r = st.rooms.get(x.name) || st.away.get(x.name) || newRoom(x.name);
      st.away.delete(x.name);
      r.topic = typeof x.topic === 'string' ? x.topic : '';
      r.members = Array.isArray(x.members) ? x.members.filter((n) => typeof n === 'string') : [];
      rooms.set(x.name, r);
    }
    if (st.resync) {
      // A guest comes back in the default room only: take it back to the rooms it was in,
      // the one on screen last, so that it is current again. (A registered person's rooms
      // are kept by the server.)
      st.resync = false;
      st.away.clear();
      for (const r of st.rooms.values()) if (!rooms.has(r.name)) st.away.set(r.name, r);
      const back = [...st.away.keys()].sort((a, b) => (a === st.current) - (b === st.current));
      for (const name of back) send({ type: 'say', text: `/join ${name}` });
      if (back.length) send({ type: 'state' });
    }
    st.rooms = rooms; // rooms we have left are dropped with their lines
    const first = !st.signedIn;
    st.signedIn = true;
    writeGuest(st.registered ? '' : st.guest);
    const current = rooms.has(s.current) ? s.current : (listed[0] ? listed[0].name : '');
    const switched = current !== st.current;
    st.current = current;
    // Replies held while this answer was on its way (see roomFor) go to the room it makes current.
    const held = current ? st.early.splice(0) : [];
    for (const e of held) insert(room(current), e);
    // What was said while we were away, room by room, once we are back in it. The join replay
    // may have brought some of it already: merge drops the duplicates.
    for (const r of rooms.values()) {
      if (r.resumeAfter) send({ type: 'history', room: r.name, after: r.resumeAfter, limit: 200 });
      r.resumeAfter = '';
    }
    if (first) showApp();
    if (switched) openRoom();
    else {
      renderRooms();
      renderHeader();
      if (held.length) {
        const stick = nearBottom();
        renderLog();
        if (stick) scrollToBottom();
      }
    }
  }

  function onHistory(h) {
    const r = st.rooms.get(h.room);
    if (!r || !Array.isArray(h.events)) return;
    r.loading = 0;
    const older = !h.after;
    const batch = [];
    for (const o of h.events) {
      const e = normalise(o);
      if (!e) continue;
      e.history = true;
      if (e.from && e.colour !== undefined) st.colours.set(fold(e.from), e.colour);
      batch.push(e);
    }
    const fromBottom = ui.log.scrollHeight - ui.log.scrollTop;
    const stick = nearBottom();
    const added = merge(r, batch);
    // A short page is the start of the history. So is a page with nothing new: a "before" bound
    // takes in its own millisecond, and if a whole page shares it there is no going further.
    if (older && (h.events.length < PAGE || added === 0)) r.complete = true;
    if (r.name !== st.current) return;
    renderLog();
    // Older lines go above what is on screen: keep it where it was.
    if (stick) scrollToBottom();
    else if (older) ui.log.scrollTop = ui.log.scrollHeight - fromBottom;
    fillScreen();
  }

  // ---- Requests ----

  function send(o) {
    if (!st.ws || st.ws.readyState !== WebSocket.OPEN) return false;
    st.ws.send(JSON.stringify(o));
    if (o.type === 'state') st.awaiting++;
    return true;
  }

  // askState asks for state once after a burst of notices, delay ms (150) after the last.
  function askState(delay = 150) {
    clearTimeout(st.stateTimer);
    st.stateTimer = setTimeout(() => send({ type: 'state' }), delay);
  }

  // loadOlder asks for the lines before the oldest one shown, one request at a time.
  function loadOlder(r) {
    if (!r || r.complete || r.events.length >= KEEP) return;
    if (r.loading && Date.now() - r.loading < 5000) return; // an error reply leaves it waiting
    const oldest = r.events.find((e) => e.time && (e.type === 'message' || e.type === 'action'));
    const req = { type: 'history', room: r.name, limit: PAGE };
    if (oldest) req.before = oldest.time;
    if (send(req)) r.loading = Date.now();
  }

  // fillScreen fetches older lines while the conversation is too short to scroll: scrolling up
  // is how more are asked for.
  function fillScreen() {
    if (ui.log.scrollHeight <= ui.log.clientHeight + 8) loadOlder(st.rooms.get(st.current));
  }

  // ---- Rendering ----

  function nearBottom() {
    return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 48;
  }
  function scrollToBottom() { ui.log.scrollTop = ui.log.scrollHeight; }

  function renderLog() {
    const r = st.rooms.get(st.current);
    const lines = [];
    if (r && r.complete) lines.push(el('p', 'more', 'No earlier messages.'));
    for (const e of r ? r.events : []) lines.push(lineEl(e));
    // aria-busy: screen readers announce the added lines of a log, not a whole redraw.
    ui.log.setAttribute('aria-busy', 'true');
    ui.log.replaceChildren(...lines);
    ui.log.setAttribute('aria-busy', 'false');
  }

  // renderRooms updates the room list in place: a button that is being clicked or has the
  // keyboard focus stays the same element while counts change.
  const roomItems = new Map(); // room name -> its <li>
  function renderRooms() {
    let total = 0;
    const items = [];
    for (const r of st.rooms.values()) {
      total += r.unread;
      let li = roomItems.get(r.name);
      if (!li) {
        li = el('li');
        const b = el('button');
        b.type = 'button';
        b.dataset.room = r.name;
        b.append(el('span', 'name', r.name), el('span', 'unread'));
        li.append(b);
        roomItems.set(r.name, li);
      }
      const b = li.firstChild;
      const badge = b.lastChild;
      badge.hidden = r.unread === 0;
      badge.textContent = String(r.unread);
      badge.classList.toggle('mentioned', r.mentioned);
      if (r.name === st.current) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
      if (r.unread > 0) b.setAttribute('aria-label', `${r.name}, ${r.unread} unread${r.mentioned ? ', mentions you' : ''}`);
      else b.removeAttribute('aria-label');
      items.push(li);
    }
    for (const [name, li] of roomItems) {
      if (!st.rooms.has(name)) { li.remove(); roomItems.delete(name); }
    }
    // Only a room whose place changed is moved.
    items.forEach((li, i) => { if (ui.roomList.children[i] !== li) ui.roomList.insertBefore(li, ui.roomList.children[i] || null); });
    document.title = total ? `(${total}) chatd` : 'chatd';
    ui.me.textContent = st.me ? `Signed in as ${st.me}${st.registered ? '' : ' (guest)'}` : '';
  }

  function renderHeader() {
    const r = st.rooms.get(st.current);
    ui.roomName.textContent = st.current;
    ui.topic.textContent = r && r.topic ? r.topic : '';
    const me = fold(st.me);
    const items = (r ? r.members : []).map((n) => {
      const li = el('li');
      li.append(nameEl(n));
      if (fold(n) === me) li.append(' (you)');
      return li;
    });
    ui.memberList.replaceChildren(...items);
    ui.toggleMembers.textContent = r ? `People (${r.members.length})` : 'People';
  }

  // openRoom shows the current room: its lines, history if it has none yet.
  function openRoom() {
    const r = st.rooms.get(st.current);
    if (r) { r.unread = 0; r.mentioned = false; }
    renderRooms();
    renderHeader();
    renderLog();
    scrollToBottom();
    if (r && r.events.length === 0) loadOlder(r);
    else fillScreen();
  }

  function setStatus(text) { ui.status.textContent = text; }

  function showApp() {
    ui.signin.hidden = true;
    ui.app.hidden = false;
    updateNotifyButton();
    ui.message.focus();
  }

  function showSignin(error) {
    ui.app.hidden = true;
    ui.signin.hidden = false;
    ui.signinError.textContent = error || '';
    ui.signinForm.querySelector('button').disabled = false;
    ui.signinName.focus();
  }

  // ---- Notifications: asked for only when the person presses the button. ----

  function updateNotifyButton() {
    ui.notify.hidden = !('Notification' in window) || Notification.permission !== 'default';
  }

  function notify(e, r) {
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    // A DM shows in the room on screen; a mention in its own room.
    const where = e.type === 'dm' ? '' : r.name;
    if (!document.hidden && (!where || where === st.current)) return;
    const title = where ? `${e.from} in ${where}` : `${e.from} (private)`;
    try {
      const n = new Notification(title, { body: e.text, tag: `chatd:${where || 'dm'}` });
      n.onclick = () => { window.focus(); n.close(); };
    } catch { /* some phones only notify from a service worker: the highlight is enough */ }
  }

  // ---- The connection ----

  function connect() {
    clearTimeout(st.retryTimer);
    setStatus('Connecting…');
    let url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
    if (st.guest) url += `?name=${encodeURIComponent(st.guest)}`;
    const ws = new WebSocket(url);
    st.ws = ws;
    let lastError = '';

    let greeted = false; // this connection got a state line: the room took us in

    ws.addEventListener('open', () => {
      setStatus('');
      st.awaiting = 0;
      st.resync = st.signedIn;
      send({ type: 'state' });
    });
    ws.addEventListener('message', (m) => {
      if (st.ws !== ws || typeof m.data !== 'string') return;
      for (const line of m.data.split('\n')) {
        if (!line) continue;
        let o;
        try { o = JSON.parse(line); } catch { continue; }
        if (!o || typeof o !== 'object') continue;
        if (o.type === 'state') {
          st.attempt = 0;
          st.awaiting = Math.max(0, st.awaiting - 1);
          greeted = true;
          onState(o);
          continue;
        }
        if (o.type === 'history') { onHistory(o); continue; }
        const e = normalise(o);
        if (!e) continue;
        if (e.type === 'error') lastError = e.text;
        onEvent(e); // the join's replay comes before the first state: kept for its room
      }
    });
    ws.addEventListener('close', (ev) => {
      if (st.ws !== ws) return; // replaced or closed on purpose
      st.ws = null;
      for (const r of st.rooms.values()) {
        const newest = r.events.findLast((e) => e.time && (e.type === 'message' || e.type === 'action'));
        if (newest && !r.resumeAfter) r.resumeAfter = newest.time;
      }
      if (!st.signedIn) {
        st.early = []; // the refusal, already said on the form
        // A sign-in that did not work. "sign in": no name and no session cookie, nothing to
        // say; otherwise the error line says why (a name taken, a link no longer valid).
        const tried = st.guest;
        st.guest = '';
        writeGuest('');
        const why = ev.reason === 'sign in' ? '' : lastError ||
          (tried ? 'Could not sign in: the server refused the connection or cannot be reached.' : '');
        showSignin(why);
        return;
      }
      if (greeted && (ev.code === 1000 || ev.code === 1008)) {
        // The room ended this session on purpose (bye, idle, a kick, a ban): coming straight
        // back would be wrong. The person may, with the button.
        st.stopped = true;
        setStatus(`Disconnected${lastError ? `: ${lastError}` : ev.reason ? ` (${ev.reason})` : ''}.`);
        ui.reconnect.hidden = false;
        return;
      }
      // A dropped connection, a restarting server, or a refusal on the way back in (a busy
      // server): try again later.
      reconnectLater(lastError);
    });
  }

  // reconnectLater waits an exponentially growing time with jitter, so that a restarted server
  // is not met by every page at once.
  function reconnectLater(why) {
    const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** st.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    st.attempt = Math.min(st.attempt + 1, 20);
    setStatus(`Disconnected${why ? ` (${why})` : ''}; trying again in ${Math.ceil(delay / 1000)} s…`);
    st.retryTimer = setTimeout(connect, delay);
  }

  // ---- What the person does ----

  ui.signinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = ui.signinName.value.trim();
    if (!name) return;
    ui.signinError.textContent = '';
    ui.signinForm.querySelector('button').disabled = true;
    st.guest = name;
    writeGuest(name);
    connect();
  });

  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = ui.message.value;
    if (!text.trim()) return;
    if (!send({ type: 'say', text })) {
      setStatus('Not connected: your message was not sent.');
      return;
    }
    ui.message.value = '';
    // A command may change rooms, topics or names; the server handles lines in order, so the
    // state asked for next reflects it.
    if (text.startsWith('/') && !text.startsWith('//')) send({ type: 'state' });
  });

  ui.roomList.addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-room]');
    if (!b) return;
    if (b.dataset.room !== st.current) {
      // Joining a room you are in makes it current, as in SSH.
      send({ type: 'say', text: `/join ${b.dataset.room}` });
      send({ type: 'state' });
    }
    if (ui.rooms.classList.contains('open')) { togglePanel(ui.rooms, ui.toggleRooms, false); ui.message.focus(); }
  });

  // Whether the newest line is in view, remembered so that a resize (a phone's keyboard
  // opening, turning it) keeps it there.
  let atBottom = true;
  ui.log.addEventListener('scroll', () => {
    atBottom = nearBottom();
    if (ui.log.scrollTop < 80) loadOlder(st.rooms.get(st.current));
  });
  new ResizeObserver(() => { if (atBottom) scrollToBottom(); }).observe(ui.log);

  // On a narrow screen the rooms and the people are panels over the conversation.
  function togglePanel(panel, button, open) {
    for (const [p, b] of [[ui.rooms, ui.toggleRooms], [ui.members, ui.toggleMembers]]) {
      const on = p === panel && open;
      p.classList.toggle('open', on);
      b.setAttribute('aria-expanded', String(on));
    }
    if (open) (panel.querySelector('button') || panel).focus();
  }
  ui.toggleRooms.addEventListener('click', () => togglePanel(ui.rooms, ui.toggleRooms, !ui.rooms.classList.contains('open')));
  ui.toggleMembers.addEventListener('click', () => togglePanel(ui.members, ui.toggleMembers, !ui.members.classList.contains('open')));
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape') return;
    for (const [p, b] of [[ui.rooms, ui.toggleRooms], [ui.members, ui.toggleMembers]]) {
      if (p.classList.contains('open')) { togglePanel(p, b, false); b.focus(); }
    }
  });

  ui.reconnect.addEventListener('click', () => {
    ui.reconnect.hidden = true;
    st.stopped = false;
    st.attempt = 0;
    connect();
  });

  ui.notify.addEventListener('click', async () => {
    try { await Notification.requestPermission(); } catch { /* refused or unsupported */ }
    updateNotifyButton();
  });

  ui.signout.addEventListener('submit', (ev) => {
    const ws = st.ws;
    st.ws = null; // no reconnect
    ws?.close();
    writeGuest('');
    if (st.registered) return; // the form posts to /logout, which ends the browser session
    ev.preventDefault();
    location.reload();
  });

  // Back online: try now rather than at the end of the back-off.
  window.addEventListener('online', () => { if (st.signedIn && !st.ws && !st.stopped) connect(); });

  // A guest name from this tab, or else the session cookie of a /weblogin link; without either
  // the server refuses and the sign-in form shows.
  connect();
})();
