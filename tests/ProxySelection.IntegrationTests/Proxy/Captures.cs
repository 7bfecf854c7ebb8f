using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>NUnit assertions over <see cref="CaptureComparison"/> (the Lab's one copy of the capture logic, shared with <c>proxysel interop</c>).</summary>
internal static class Captures
{
    /// <summary>Segments per direction a capture may lose at its stop without the comparison failing.</summary>
    public const int MaxCaptureLoss = CaptureComparison.MaxCaptureLoss;

    public static List<CapturedSegment> Segments(IReadOnlyList<PcapPacket> packets, Func<CapturedSegment, bool>? where = null) =>
        CaptureComparison.Segments(packets, where);

    /// <summary>
    /// Lets the closing segments (the last ACKs, MPTCP's DATA_FIN exchange after the client exited) reach both
    /// interfaces, then stops both captures together.
    /// </summary>
    public static async Task<(IReadOnlyList<PcapPacket> First, IReadOnlyList<PcapPacket> Second)> StopBothAsync(PacketCapture first, PacketCapture second)
    {
        var both = await CaptureComparison.StopAllAsync([first, second], ProxyLab.Timeout);
        return (both[0], both[1]);
    }

    public static bool IsSyn(CapturedSegment s) => s.IsSyn;

    public static bool IsSynAck(CapturedSegment s) => s.IsSynAck;

    /// <summary>
    /// Asserts that no segment was changed between the two captures, in both directions of <paramref name="from"/>'s
    /// traffic: every segment seen on both sides (same ports, sequence, acknowledgement and flags) is byte for byte the
    /// same, and at most <see cref="MaxCaptureLoss"/> plus the losses tcpdump reported (<paramref name="reportedLoss"/>)
    /// are missing from one side — on a loaded machine tcpdump drops packets (reported) and loses a few it was handed
    /// when it is stopped (see <see cref="PacketCapture.StopAsync"/>): capture artefacts, not changes on the path.
    /// A changed segment is never tolerated.
    /// </summary>
    public static void AssertSameSegments(IReadOnlyList<CapturedSegment> before, IReadOnlyList<CapturedSegment> after, string from, int reportedLoss)
    {
        foreach (var outbound in new[] { true, false })
        {
            bool Mine(CapturedSegment s) => outbound ? s.Source == from : s.Destination == from;
            string what = outbound ? $"from {from}" : $"to {from}";
            var result = CaptureComparison.Compare(before, after, Mine);
            Assert.That(result.Before, Is.Not.Zero, $"no segment {what} captured");
            Assert.That(result.Changed, Is.Zero, $"segments {what} changed on the way through the proxy:\n{result.Detail}");
            Assert.That(result.Missing, Is.LessThanOrEqualTo(MaxCaptureLoss + reportedLoss),
                $"segments {what} missing ({result.Before} and {result.After} captured):\n{result.Detail}");
            Assert.That(before.Concat(after).Any(s => Mine(s) && (s.IsSyn || s.IsSynAck)), Is.True, $"no SYN or SYN/ACK {what} captured");
        }
    }

    /// <summary>
    /// Packets tcpdump says it lost: dropped by the kernel, plus received by the filter but not written (at the stop).
    /// </summary>
    public static int ReportedLoss(PacketCapture capture) => CaptureComparison.ReportedLoss(capture);
}
