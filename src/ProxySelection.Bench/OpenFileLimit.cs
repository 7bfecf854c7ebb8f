using System.Runtime.InteropServices;

namespace ProxySelection.Bench;

/// <summary>
/// RLIMIT_NOFILE of this process, which every subject and tool the bench starts inherits. 10,000 idle connections
/// cost 20,000 descriptors in the relay alone (client and upstream leg), more than the usual 20,000 hard limit: the
/// bench raises soft and hard limit first, which needs CAP_SYS_RESOURCE (root normally has it; a container may not).
/// </summary>
internal static partial class OpenFileLimit
{
    private const int RlimitNofile = 7;

    [StructLayout(LayoutKind.Sequential)]
    private struct Rlimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    /// <summary>The soft limit now.</summary>
    public static long Current => Get(out var limit) ? (long)Math.Min(limit.Current, long.MaxValue) : long.MaxValue;

    /// <summary>
    /// Raises the soft limit to <paramref name="wanted"/>, the hard limit too when it is lower (needs CAP_SYS_RESOURCE);
    /// without the capability, at least the soft limit to the hard one. Returns the soft limit now in force.
    /// </summary>
    public static long TryRaise(long wanted)
    {
        if (!Get(out var limit))
        {
            return long.MaxValue;
        }
        if (limit.Current >= (ulong)wanted)
        {
            return (long)Math.Min(limit.Current, long.MaxValue);
        }
        var raised = new Rlimit { Current = (ulong)wanted, Maximum = Math.Max(limit.Maximum, (ulong)wanted) };
        if (SetRlimit(RlimitNofile, ref raised) != 0)
        {
            // EPERM: no CAP_SYS_RESOURCE to raise the hard limit; take what the hard limit allows.
            raised = new Rlimit { Current = limit.Maximum, Maximum = limit.Maximum };
            _ = SetRlimit(RlimitNofile, ref raised);
        }
        return Current;
    }

    /// <summary>Descriptors this process holds now.</summary>
    public static int OpenNow()
    {
        try
        {
            return Directory.GetFiles("/proc/self/fd").Length;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private static bool Get(out Rlimit limit) => GetRlimit(RlimitNofile, out limit) == 0;

    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static partial int GetRlimit(int resource, out Rlimit limit);

    [LibraryImport("libc", EntryPoint = "setrlimit", SetLastError = true)]
    private static partial int SetRlimit(int resource, ref Rlimit limit);
}
