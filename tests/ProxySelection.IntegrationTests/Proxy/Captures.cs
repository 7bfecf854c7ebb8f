using System.Net;
using ProxySelection.Lab;
using ProxySelection.Wire;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>Reads TCP segments out of captures so two sides of a router can be compared byte for byte.</summary>
internal static class Captures
{
    /// <summary>One captured TCP segment: addresses, flags, capture time and the segment's bytes (TCP header and payload).</summary>
    internal sealed record Segment(string Source, string Destination, TcpFlags Flags, long TimestampMicroseconds, byte[] Bytes)
    {
        /// <summary>What a router must not change: both addresses and the whole TCP segment (TTL/hop limit and the IPv4
        /// header checksum are the only IP fields left out, as a router legitimately rewrites them).</summary>
        public string Identity => $"{Source}>{Destination} {Convert.ToHexString(Bytes)}";
    }

    public static List<Segment> Segments(IReadOnlyList<PcapPacket> packets, Func<Segment, bool>? where = null)
    {
        var segments = new List<Segment>();
        foreach (var packet in packets)
        {
            if (IpPacket.TryParse(packet.IpPacket.Span, out var ip) != WireError.None
                || TcpHeader.TryParse(ip.Payload, out var tcp) != WireError.None)
            {
                continue;
            }

            var segment = new Segment(
                new IPAddress(ip.SourceAddress).ToString(),
                new IPAddress(ip.DestinationAddress).ToString(),
                tcp.Flags,
                packet.TimestampMicroseconds,
                ip.Payload.ToArray());
            if (where is null || where(segment))
            {
                segments.Add(segment);
            }
        }

        return segments;
    }

    /// <summary>
    /// Lets the closing segments (the last ACKs, MPTCP's DATA_FIN exchange after the client exited) reach both
    /// interfaces, then stops both captures together.
    /// </summary>
    public static async Task<(IReadOnlyList<PcapPacket> First, IReadOnlyList<PcapPacket> Second)> StopBothAsync(PacketCapture first, PacketCapture second)
    {
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        // A long quiet period: on SIGINT tcpdump drops what it was handed but had not written (Lab's PacketCapture).
        var one = first.StopAsync(TimeSpan.FromSeconds(1));
        var two = second.StopAsync(TimeSpan.FromSeconds(1));
        return (await one.WaitAsync(ProxyLab.Timeout), await two.WaitAsync(ProxyLab.Timeout));
    }

    public static bool IsSyn(Segment s) => (s.Flags & (TcpFlags.Syn | TcpFlags.Ack)) == TcpFlags.Syn;

    public static bool IsSynAck(Segment s) => (s.Flags & (TcpFlags.Syn | TcpFlags.Ack)) == (TcpFlags.Syn | TcpFlags.Ack);

    /// <summary>
    /// Asserts that no segment was changed between the two captures, in both directions of <paramref name="from"/>'s
    /// traffic: every segment seen on both sides (same ports, sequence, acknowledgement and flags) is byte for byte the
    /// same, and at most <see cref="MaxCaptureLoss"/> plus the losses tcpdump reported (<paramref name="reportedLoss"/>)
    /// are missing from one side — on a loaded machine tcpdump drops packets (reported) and loses a few it was handed
    /// when it is stopped (see <see cref="PacketCapture.StopAsync"/>): capture artefacts, not changes on the path.
    /// A changed segment is never tolerated.
    /// </summary>
    public static void AssertSameSegments(IReadOnlyList<Segment> before, IReadOnlyList<Segment> after, string from, int reportedLoss)
    {
        foreach (var outbound in new[] { true, false })
        {
            bool Mine(Segment s) => outbound ? s.Source == from : s.Destination == from;
            var one = before.Where(Mine).ToList();
            var two = after.Where(Mine).ToList();
            string what = outbound ? $"from {from}" : $"to {from}";
            Assert.That(one, Is.Not.Empty, $"no segment {what} captured");
            var oneIds = one.Select(s => s.Identity).ToHashSet();
            var twoIds = two.Select(s => s.Identity).ToHashSet();
            var oneKeys = one.ToLookup(Key);
            var twoKeys = two.ToLookup(Key);
            var changed = one.Where(s => !twoIds.Contains(s.Identity) && twoKeys.Contains(Key(s)))
                .Concat(two.Where(s => !oneIds.Contains(s.Identity) && oneKeys.Contains(Key(s))))
                .Select(s => s.Identity).ToList();
            Assert.That(changed, Is.Empty, $"segments {what} changed on the way through the proxy");
            var lostAfter = one.Where(s => !twoKeys.Contains(Key(s))).ToList();
            var lostBefore = two.Where(s => !oneKeys.Contains(Key(s))).ToList();
            Assert.That(lostAfter.Count + lostBefore.Count, Is.LessThanOrEqualTo(MaxCaptureLoss + reportedLoss),
                $"segments {what} missing: {lostAfter.Count} after the proxy, {lostBefore.Count} before it ({one.Count} and {two.Count} captured):\n" +
                string.Join("\n", lostAfter.Select(s => $"after: #{one.IndexOf(s)} {s.Identity}").Concat(lostBefore.Select(s => $"before: #{two.IndexOf(s)} {s.Identity}"))));
            Assert.That(one.Concat(two).Any(s => IsSyn(s) || IsSynAck(s)), Is.True, $"no SYN or SYN/ACK {what} captured");
        }
    }

    /// <summary>
    /// Packets tcpdump says it lost: dropped by the kernel, plus received by the filter but not written (at the stop).
    /// </summary>
    public static int ReportedLoss(PacketCapture capture)
    {
        int Read(string what)
        {
            var match = System.Text.RegularExpressions.Regex.Match(capture.Log, $@"(\d+) packets? {what}");
            return match.Success ? int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
        }

        return Read("dropped by kernel") + Math.Max(0, Read("received by filter") - Read("captured"));
    }

    /// <summary>Segments per direction a capture may lose at its stop without the comparison failing.</summary>
    public const int MaxCaptureLoss = 3;

    /// <summary>Ports, sequence, acknowledgement, data offset and flags: which segment this is, not what it carries.</summary>
    private static string Key(Segment s) => $"{s.Source}>{s.Destination} {Convert.ToHexString(s.Bytes, 0, 14)}";
}
