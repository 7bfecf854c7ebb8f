namespace ProxySelection.Interception.Nfqueue;

/// <summary>How the calling thread was scheduled by <see cref="ThreadScheduling.Raise"/>.</summary>
public enum ThreadSchedule
{
    /// <summary>Unchanged: neither the real-time policy nor the nice value was permitted.</summary>
    Normal,

    /// <summary>A lower nice value (setpriority; needs CAP_SYS_NICE or RLIMIT_NICE).</summary>
    Niced,

    /// <summary>SCHED_RR at priority 1 (needs CAP_SYS_NICE or RLIMIT_RTPRIO ≥ 1).</summary>
    RoundRobin,
}

/// <summary>
/// Raises the calling thread's scheduling (best effort, per thread: Linux applies both calls to a thread id). For threads
/// whose lateness a client pays for — a held SYN's release — on a host whose cores are busy with other work.
/// </summary>
public static unsafe class ThreadScheduling
{
    private const int SchedRr = 2;

    /// <summary>
    /// SCHED_RR priority 1 when <paramref name="realtime"/> and permitted, else nice <paramref name="nice"/> when
    /// permitted. Priority 1 is the lowest real-time one: it preempts every normal thread but no kernel or other
    /// real-time work, and the kernel's RT throttling (sched_rt_runtime_us) still leaves the core 5 % to others.
    /// </summary>
    public static ThreadSchedule Raise(bool realtime, int nice)
    {
        int tid = InterceptionNative.gettid();
        if (realtime)
        {
            int priority = 1;
            if (InterceptionNative.sched_setscheduler(tid, SchedRr, &priority) == 0)
            {
                return ThreadSchedule.RoundRobin;
            }
        }

        return InterceptionNative.setpriority(0 /* PRIO_PROCESS: with a thread id, that thread */, tid, nice) == 0
            ? ThreadSchedule.Niced
            : ThreadSchedule.Normal;
    }

    /// <summary>
    /// Every thread of this process to nice <paramref name="nice"/> (Linux applies it per thread id; a thread created
    /// later inherits its creator's, so the thread pool's new threads follow). Returns how many were changed (0 when
    /// not permitted).
    /// </summary>
    public static int RaiseProcess(int nice)
    {
        int raised = 0;
        foreach (var task in Directory.EnumerateDirectories("/proc/self/task"))
        {
            if (int.TryParse(Path.GetFileName(task), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int tid)
                && InterceptionNative.setpriority(0, tid, nice) == 0)
            {
                raised++;
            }
        }

        return raised;
    }
}
