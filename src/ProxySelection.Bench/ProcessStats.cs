using System.Globalization;

namespace ProxySelection.Bench;

/// <summary>CPU time and resident memory of a process group, read from /proc (a relay may fork or be wrapped by
/// <c>setsid ip netns exec mptcpize run</c>, so everything in the group counts).</summary>
internal static class ProcessStats
{
    private static readonly double TicksPerSecond = 100.0;   // USER_HZ: 100 on every Linux ABI .NET runs on.

    /// <summary>
    /// utime + stime + cutime + cstime of every live process whose process group is <paramref name="groupId"/>, in seconds.
    /// The children's share matters for socat: the forked child that copied the data has exited (and been reaped into
    /// its parent's cutime) by the time the run ends.
    /// </summary>
    public static double CpuSeconds(int groupId)
    {
        long ticks = 0;
        foreach (var stat in GroupStats(groupId))
        {
            // Fields after "(comm)": state(3) ppid(4) pgrp(5) ... utime(14) stime(15) cutime(16) cstime(17), counted from 1.
            for (int i = 11; i <= 14; i++)
            {
                ticks += long.Parse(stat[i], CultureInfo.InvariantCulture);
            }
        }
        return ticks / TicksPerSecond;
    }

    /// <summary>Sum of VmRSS over the group, in bytes.</summary>
    public static long ResidentBytes(int groupId)
    {
        long bytes = 0;
        foreach (var pid in GroupPids(groupId))
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{pid}/status"))
                {
                    if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    {
                        var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                        bytes += long.Parse(f[1], CultureInfo.InvariantCulture) * 1024;
                    }
                }
            }
            catch (IOException)
            {
                // Exited between listing and reading.
            }
        }
        return bytes;
    }

    /// <summary>Pids in the group (the leader first when alive).</summary>
    public static IReadOnlyList<int> GroupPids(int groupId) =>
        [.. EnumerateStats().Where(s => s.Group == groupId).Select(s => s.Pid).OrderBy(p => p == groupId ? 0 : 1)];

    private static IEnumerable<string[]> GroupStats(int groupId) =>
        EnumerateStats().Where(s => s.Group == groupId).Select(s => s.Fields);

    private static IEnumerable<(int Pid, int Group, string[] Fields)> EnumerateStats()
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                continue;
            }
            string text;
            try
            {
                text = File.ReadAllText(Path.Combine(dir, "stat"));
            }
            catch (IOException)
            {
                continue;
            }
            catch (UnauthorizedAccessException)
            {
                continue;
            }
            // comm may hold spaces and parentheses: split after the last ')'.
            int close = text.LastIndexOf(')');
            if (close < 0)
            {
                continue;
            }
            var fields = text[(close + 2)..].Split(' ');
            if (fields.Length > 14 && int.TryParse(fields[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out int group))
            {
                yield return (pid, group, fields);
            }
        }
    }
}
