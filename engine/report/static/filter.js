// Show only the gallery cards matching every chosen filter (category, label, verdict).
(function () {
  const form = document.getElementById("filters");
  if (!form) return;
  const cards = Array.from(document.querySelectorAll(".card"));
  const shown = document.getElementById("shown");

  function apply() {
    const chosen = Array.from(form.querySelectorAll("select")).map((s) => [s.name, s.value]);
    let visible = 0;
    for (const card of cards) {
      const match = chosen.every(([key, value]) => !value || JSON.parse(card.dataset[key]).includes(value));
      card.hidden = !match;
      if (match) visible += 1;
    }
    shown.textContent = visible + " of " + cards.length + " clips";
  }

  form.addEventListener("change", apply);
  apply();
})();
