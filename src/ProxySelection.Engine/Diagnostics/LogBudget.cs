namespace ProxySelection.Engine.Diagnostics;

/// <summary>
/// Bounds lines that a flood could repeat (the fronts' per-client lines; the engine's per-packet and per-destination
/// warnings): at most <see cref="LinesPerWindow"/> a second; the next line written says how many were left out. The
/// counters count all.
/// </summary>
public sealed class LogBudget(TimeProvider time)
{
    public const int LinesPerWindow = 20;

    private static readonly TimeSpan Window = TimeSpan.FromSeconds(1);

    private readonly Lock _lock = new();
    private long _windowStart = time.GetTimestamp();
    private int _lines;
    private long _skipped;

    /// <summary>True when a line may be written; <paramref name="skipped"/> is how many were left out since the last one.</summary>
    public bool TryTake(out long skipped)
    {
        lock (_lock)
        {
            if (time.GetElapsedTime(_windowStart) >= Window)
            {
                _windowStart = time.GetTimestamp();
                _lines = 0;
            }

            if (_lines >= LinesPerWindow)
            {
                _skipped++;
                skipped = 0;
                return false;
            }

            _lines++;
            skipped = _skipped;
            _skipped = 0;
            return true;
        }
    }
}
