using System.Globalization;
using System.Text;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.ScaleOut;

/// <summary>
/// With <c>PSEL_SCALEOUT_CAPTURE=1</c>: every SYN and SYN/ACK captured (tcpdump, SYN flag only: cheap at M=300) in the
/// client and in every instance, so a join the client sent without getting a SYN/ACK back can be followed: did its
/// holder receive it, did the holder send the SYN/ACK (then the path lost it), or not (the holder dropped it).
/// </summary>
internal sealed class JoinCaptures
{
    // SYNs and RSTs. IPv6: tcpdump's tcp[] does not reach past an IPv6 header; the flags byte is at 40 + 13 without
    // extension headers.
    private const string SynFilter = "(ip and tcp[tcpflags] & (tcp-syn|tcp-rst) != 0) or (ip6 and ip6[6] == 6 and ip6[53] & 6 != 0)";

    private readonly List<(string Name, NetNamespace Ns, LabProcess Process, string Pcap)> _captures = [];
    private readonly long _backlogDropsBefore = BacklogDrops();

    public static bool Asked => Environment.GetEnvironmentVariable("PSEL_SCALEOUT_CAPTURE") == "1";

    public static async Task<JoinCaptures?> StartIfAskedAsync(ScaleOutLab lab)
    {
        if (!Asked)
        {
            return null;
        }

        var captures = new JoinCaptures();
        var all = new List<(string, NetNamespace)> { ("client", lab.Topology.Client) };
        all.AddRange(lab.Topology.Instances.Select((ns, i) => (string.Create(CultureInfo.InvariantCulture, $"instance{i + 1}"), ns)));
        foreach (var (name, ns) in all)
        {
            var pcap = Path.Combine(lab.Directory, name + "-syn.pcap");
            var process = ns.StartProcess("tcpdump", ["-i", "any", "-n", "-U", "-s", "160", "-B", "8192", "-w", pcap, SynFilter]);
            await process.WaitForOutputAsync("listening on", ScaleOutLab.Timeout);
            captures._captures.Add((name, ns, process, pcap));
        }

        return captures;
    }

    /// <summary>Stops the captures; returns, for each join SYN the client sent and got no SYN/ACK for, what every namespace saw of its 4-tuple.</summary>
    public async Task<string> ReportAsync()
    {
        var text = new Dictionary<string, string[]>();
        // Kept for a look afterwards: the lab's directory goes with the lab.
        var kept = Directory.CreateTempSubdirectory("psel-joincap-").FullName;
        foreach (var (name, ns, process, pcap) in _captures)
        {
            await process.StopAsync(TimeSpan.FromSeconds(5), LabNative.SigInt);
            File.Copy(pcap, Path.Combine(kept, Path.GetFileName(pcap)));
            var read = await ns.RunAsync("tcpdump", ["-r", pcap, "-n", "-tt"], TimeSpan.FromSeconds(60));
            text[name] = read.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        }

        // "SRC.SPORT > DST.DPORT:" of the client's join SYNs, and of the SYN/ACKs it received (reversed).
        var client = text["client"];
        var joins = client.Where(l => l.Contains("Flags [S],", StringComparison.Ordinal) && l.Contains(" join ", StringComparison.Ordinal))
            .Select(Tuple).Where(t => t is not null).Select(t => t!).ToHashSet();
        var answered = client.Where(l => l.Contains("Flags [S.],", StringComparison.Ordinal)).Select(Tuple).Where(t => t is not null)
            .Select(t => Reverse(t!)).ToHashSet();
        var unanswered = joins.Where(j => !answered.Contains(j)).ToList();
        // A join whose SYN/ACK came back and which the client then reset (its connection no longer takes subflows).
        var reset = client.Where(l => l.Contains("Flags [R", StringComparison.Ordinal)).Select(Tuple).Where(t => t is not null && joins.Contains(t)).Select(t => t!).Distinct().ToList();
        var report = new StringBuilder(string.Create(CultureInfo.InvariantCulture,
            $"join captures (pcaps in {kept}): the client sent {joins.Count} join 4-tuples, {unanswered.Count} without a SYN/ACK back, {reset.Count} reset by the client; packets dropped at the input backlogs (all namespaces) meanwhile: {BacklogDrops() - _backlogDropsBefore}"));
        foreach (var (tuple, what) in unanswered.Select(t => (t, "unanswered")).Concat(reset.Select(t => (t, "reset"))))
        {
            var reverse = Reverse(tuple);
            report.Append('\n').Append(what).Append(" join ").Append(tuple);
            foreach (var (name, lines) in text)
            {
                foreach (var line in lines.Where(l => l.Contains(tuple, StringComparison.Ordinal) || l.Contains(reverse, StringComparison.Ordinal)))
                {
                    report.Append("\n  ").Append(name).Append(": ").Append(line);
                }
            }
        }

        return report.ToString();
    }

    /// <summary>
    /// The kernel's per-CPU input backlog drops (the second column of /proc/net/softnet_stat, hex), host-wide: a veth
    /// hands every packet to its peer through that backlog, which drops beyond net.core.netdev_max_backlog.
    /// </summary>
    private static long BacklogDrops() =>
        File.ReadAllLines("/proc/net/softnet_stat").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length > 1).Sum(f => long.Parse(f[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture));

    /// <summary>"SRC.SPORT > DST.DPORT" of a tcpdump line, or null.</summary>
    private static string? Tuple(string line)
    {
        int ip = line.IndexOf(" IP", StringComparison.Ordinal);
        int colon = ip < 0 ? -1 : line.IndexOf(": ", ip, StringComparison.Ordinal);
        if (colon < 0)
        {
            return null;
        }

        var fields = line[(line.IndexOf(' ', ip + 1) + 1)..colon];
        return fields.Contains(" > ", StringComparison.Ordinal) ? fields : null;
    }

    private static string Reverse(string tuple)
    {
        var parts = tuple.Split(" > ");
        return parts[1] + " > " + parts[0];
    }
}
