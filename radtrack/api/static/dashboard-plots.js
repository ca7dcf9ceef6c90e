"use strict";
// The dashboard's plots of the last hour, drawn with the vendored uPlot (static/vendor/uplot/):
// sessions online (in total, per NAS, the other NASes summed) and Starts and Stops per minute,
// from the sessionTrend query's columns. dashboard.js calls drawTrend(trend) and clearPlots().

const PLOT_COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2",
                     "#db2777", "#65a30d"];
const TOTAL_COLOR = "#1d2430";
const OTHER_COLOR = "#98a2b3";
const plots = new Map();  // figure id -> {plot, shape, width}

// Samples summed per minute: the sessions opened and closed in each minute of the hour
function perMinute(trend) {
  const minutes = [];
  const opened = [];
  const closed = [];
  trend.times.forEach((time, i) => {
    const minute = Math.floor(time / 60) * 60;
    if (minutes[minutes.length - 1] !== minute) {
      minutes.push(minute);
      opened.push(0);
      closed.push(0);
    }
    opened[opened.length - 1] += trend.opened[i];
    closed[closed.length - 1] += trend.closed[i];
  });
  return [minutes, opened, closed];
}

function fromZero(u, min, max) {
  return [0, Math.max(4, Math.ceil(max * 1.1))];
}

// Whole minutes: the last five at least, the bars of the first and last one inside (from the
// data: for a single point, uPlot would offer a day)
function minutes(u, min, max) {
  const xs = u.data[0];
  if (!xs.length) return [min, max];
  const first = xs[0];
  const last = xs[xs.length - 1];
  return [Math.min(first, last - 4 * 60) - 30, last + 30];
}

// The legend shows the value under the cursor, and the latest one while there is no cursor
function latest(u, value, si, idx) {
  const shown = idx == null ? u.data[si][u.data[si].length - 1] : value;
  return shown ?? "–";
}

function when(u, value, si, idx) {
  const shown = idx == null ? u.data[0][u.data[0].length - 1] : value;
  return shown == null ? "–" : new Date(shown * 1000).toLocaleTimeString();
}

const SECONDS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];  // tick steps: no ms
const MINUTES = [60, 120, 300, 600, 900, 1800, 3600];

// One plot in the figure ``id``: made again when its series or its width change, else given
// the new data; ``summary`` goes into its caption
function plot(id, series, data, summary, x = {}) {
  const figure = document.getElementById(id);
  const width = Math.max(240, figure.clientWidth);
  const shape = JSON.stringify(series.map((s) => s.label));
  let entry = plots.get(id);
  if (!entry || entry.shape !== shape || entry.width !== width) {
    if (entry) entry.plot.destroy();
    const options = {
      width,
      height: 170,
      scales: {x: {time: true, range: x.range}, y: {range: fromZero}},
      axes: [{stroke: "#667085", incrs: x.incrs || SECONDS}, {stroke: "#667085", size: 44}],
      cursor: {drag: {x: false, y: false}},
      series: [{label: "time", value: when}, ...series.map((s) => ({value: latest, ...s}))],
    };
    entry = {plot: new uPlot(options, data, figure), shape, width};
    plots.set(id, entry);
  } else {
    entry.plot.setData(data);
  }
  figure.dataset.points = String(data[0].length);
  figure.querySelector(".summary").textContent = summary;
}

function drawTrend(trend) {
  const total = {label: "all", stroke: TOTAL_COLOR, width: 2};
  const series = [total];
  const data = [trend.times, trend.online];
  trend.byNas.forEach((nas, i) => {
    series.push({label: nas.nasName, stroke: PLOT_COLORS[i % PLOT_COLORS.length], width: 1.5});
    data.push(nas.online);
  });
  if (trend.other.some((count) => count > 0)) {
    series.push({label: "other NASes", stroke: OTHER_COLOR, width: 1.5, dash: [5, 4]});
    data.push(trend.other);
  }
  const last = trend.online[trend.online.length - 1] ?? 0;
  plot("plot-online", series, data, `${last} now`);

  const churn = perMinute(trend);
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  const bar = (align) => uPlot.paths.bars({size: [0.4, 18], align});
  plot("plot-churn", [
    {label: "Starts", stroke: "#067647", fill: "#067647", paths: bar(-1), points: {show: false}},
    {label: "Stops", stroke: "#b54708", fill: "#b54708", paths: bar(1), points: {show: false}},
  ], churn, `${sum(churn[1])} Starts, ${sum(churn[2])} Stops this hour`,
  {range: minutes, incrs: MINUTES});
}

function clearPlots() {
  for (const [id, entry] of plots) {
    entry.plot.destroy();
    const figure = document.getElementById(id);
    figure.dataset.points = "0";
    figure.querySelector(".summary").textContent = "";
  }
  plots.clear();
}
