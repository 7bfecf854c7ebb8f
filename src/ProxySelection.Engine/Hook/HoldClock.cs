using ProxySelection.Interception.Nfqueue;

namespace ProxySelection.Engine.Hook;

/// <summary>
/// The overdue-hold check on a thread of its own, every <c>period</c>, scheduled above normal work (SCHED_RR priority 1
/// when permitted, else nice -10; neither when <see cref="ProxyEngineOptions.RaisedScheduling"/> is off). It replaced a thread-pool timer: under a 20k SYN/s miss flood on 2 busy vCPUs the pool
/// ran the 10 ms sweep behind probe completions, and released holds came in bursts 30-230 ms apart (issue 12). The
/// thread does almost nothing per tick (a peek at the oldest hold), so a real-time policy costs the host nothing.
/// </summary>
internal sealed class HoldClock : IDisposable
{
    /// <summary>The nice value of the daemon's threads when raised, and of this one when SCHED_RR is not permitted.</summary>
    public const int Nice = -10;

    private readonly Action _tick;
    private readonly TimeSpan _period;
    private readonly bool _realtime;
    private readonly ManualResetEventSlim _stop = new();
    private readonly Thread _thread;
    private readonly TaskCompletionSource<ThreadSchedule> _schedule = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private HoldClock(Action tick, TimeSpan period, bool realtime)
    {
        _tick = tick;
        _period = period;
        _realtime = realtime;
        _thread = new Thread(Run) { IsBackground = true, Name = "psel-hold-clock" };
    }

    /// <summary>How the thread got scheduled (known once it ran).</summary>
    public Task<ThreadSchedule> Schedule => _schedule.Task;

    public static HoldClock Start(Action tick, TimeSpan period, bool realtime)
    {
        ArgumentNullException.ThrowIfNull(tick);
        var clock = new HoldClock(tick, period, realtime);
        clock._thread.Start();
        return clock;
    }

    private void Run()
    {
        _schedule.TrySetResult(_realtime ? ThreadScheduling.Raise(realtime: true, Nice) : ThreadSchedule.Normal);
        while (!_stop.Wait(_period))
        {
            _tick();
        }
    }

    public void Dispose()
    {
        _stop.Set();
        _thread.Join(TimeSpan.FromSeconds(5));
        _stop.Dispose();
    }
}
