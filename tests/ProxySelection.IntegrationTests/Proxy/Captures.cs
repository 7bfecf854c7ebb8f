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
    /// same, the SYN and SYN/ACK are on both sides, and at most <see cref="MaxCaptureLoss"/> segments per side are
    /// missing from the other — tcpdump loses a few packets on a loaded machine when it is stopped (see
    /// <see cref="PacketCapture.StopAsync"/>), which is a capture artefact, not a change on the path.
    /// </summary>
    public static void AssertSameSegments(IReadOnlyList<Segment> before, IReadOnlyList<Segment> after, string from)
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
            var lostAfter = one.Count(s => !twoKeys.Contains(Key(s)));
            var lostBefore = two.Count(s => !oneKeys.Contains(Key(s)));
            Assert.That(lostAfter + lostBefore, Is.LessThanOrEqualTo(MaxCaptureLoss),
                $"segments {what} missing: {lostAfter} after the proxy, {lostBefore} before it ({one.Count} and {two.Count} captured)");
            var handshake = one.Where(s => IsSyn(s) || IsSynAck(s)).Select(s => s.Identity).ToList();
            Assert.That(handshake, Is.Not.Empty, $"no SYN or SYN/ACK {what} captured before the proxy");
            Assert.That(twoIds, Is.SupersetOf(handshake), $"the handshake {what} differs after the proxy");
        }
    }

    /// <summary>Segments per direction a capture may lose at its stop without the comparison failing.</summary>
    public const int MaxCaptureLoss = 3;

    /// <summary>Ports, sequence, acknowledgement, data offset and flags: which segment this is, not what it carries.</summary>
    private static string Key(Segment s) => $"{s.Source}>{s.Destination} {Convert.ToHexString(s.Bytes, 0, 14)}";
}
