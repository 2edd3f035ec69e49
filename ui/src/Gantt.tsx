// A Gantt chart of a run: one row per task (workflow order), one bar per attempt, coloured by
// how the attempt ended. Rows are virtualised.
import { useMemo } from "preact/hooks";
import { fmtDuration, type Timeline } from "./api";
import { STATE_COLORS } from "./graph/GraphView";
import { VirtualList } from "./VirtualList";

const ATTEMPT_COLORS: Record<string, string> = {
  ...STATE_COLORS, timed_out: STATE_COLORS.failed, lost: STATE_COLORS.stopped,
};

export function Gantt({ timeline, onSelect, selected }: { timeline: Timeline; onSelect: (id: string) => void; selected: string | null }) {
  const t0 = timeline.start ? Date.parse(timeline.start) : 0;
  const t1 = timeline.end ? Date.parse(timeline.end) : t0 + 1000;
  const span = Math.max(t1 - t0, 1);
  const rows = useMemo(() => timeline.tasks, [timeline]);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => ({ f, label: fmtDuration((span * f) / 1000) }));
  if (!timeline.start) return <p class="muted">No attempt has started yet.</p>;
  const now = Date.now();
  return (
    <div class="gantt" data-testid="gantt">
      <VirtualList
        label="Gantt chart"
        items={rows}
        keyOf={(task) => task.task_id}
        rowHeight={24}
        height={Math.min(560, rows.length * 24 + 40)}
        header={
          <div class="gantt-axis">
            <span class="gantt-name">task</span>
            <span class="gantt-track">
              {ticks.map((t) => (
                <i style={{ left: `${t.f * 100}%` }} key={t.f}>{t.label}</i>
              ))}
            </span>
          </div>
        }
        onOpen={(task) => onSelect(task.task_id)}
        selected={selected}
        row={(task) => (
          <div class="gantt-row">
            <span class="gantt-name" title={task.task_id}>{task.task_id}</span>
            <span class="gantt-track">
              {task.attempts.map((a) => {
                const s = a.started_at ? Date.parse(a.started_at) : t0;
                const e = a.ended_at ? Date.parse(a.ended_at) : Math.min(now, t1);
                const left = ((s - t0) / span) * 100;
                const width = Math.max(((e - s) / span) * 100, 0.3);
                return (
                  <b
                    key={a.attempt}
                    class="gantt-bar"
                    style={{ left: `${left}%`, width: `${width}%`, background: ATTEMPT_COLORS[a.state] ?? "#cbd5e1" }}
                    title={`${task.task_id} attempt ${a.attempt}: ${a.state}, ${fmtDuration(a.duration_seconds)}`}
                  />
                );
              })}
            </span>
          </div>
        )}
      />
    </div>
  );
}
