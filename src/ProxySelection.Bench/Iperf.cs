using System.Globalization;
using System.Net;
using System.Text.Json;
using ProxySelection.Lab;

namespace ProxySelection.Bench;

/// <summary>One iperf3 run: the received rate and the per-interval rates (0.1 s), which show stalls.</summary>
public sealed record IperfRun(double BitsPerSecond, long Bytes, IReadOnlyList<double> IntervalBitsPerSecond)
{
    /// <summary>Intervals below a tenth of the run's rate: the ~200 ms MPTCP-level stalls of issue 7.</summary>
    public int StalledIntervals => IntervalBitsPerSecond.Count(v => v < BitsPerSecond / 10);
}

/// <summary>iperf3 client with 0.1 s intervals (the Lab helper reads only the summary).</summary>
internal static class Iperf
{
    public static async Task<IperfRun> RunAsync(NetNamespace client, IPEndPoint server, int seconds, bool mptcp)
    {
        List<string> args =
        [
            "iperf3", "-c", server.Address.ToString(), "-p", server.Port.ToString(CultureInfo.InvariantCulture),
            "-t", seconds.ToString(CultureInfo.InvariantCulture), "-i", "0.1", "-J",
        ];
        var timeout = TimeSpan.FromSeconds(seconds + 15);
        var r = mptcp
            ? await client.RunAsync("mptcpize", ["run", .. args], timeout).ConfigureAwait(false)
            : await client.RunAsync(args[0], args.Skip(1), timeout).ConfigureAwait(false);
        r.EnsureSuccess();
        return Parse(r.StdOut);
    }

    /// <summary>
    /// Reads iperf3 -J output. iperf3 can exit 0 with an <c>error</c> member and an empty <c>end</c> (e.g. the control
    /// connection closed early, seen once at 1 Gbit/s under mptcpize): that is reported as the error, not as a missing key.
    /// </summary>
    internal static IperfRun Parse(string output)
    {
        try
        {
            using var json = JsonDocument.Parse(output);
            var root = json.RootElement;
            if (root.TryGetProperty("error", out var error))
            {
                throw new LabException($"iperf3 reported: {error}");
            }
            if (!root.TryGetProperty("end", out var end) ||
                !(end.TryGetProperty("sum_received", out var sum) || end.TryGetProperty("sum", out sum)))
            {
                throw new LabException("iperf3 output has no end.sum_received (the test did not finish)");
            }
            var intervals = root.TryGetProperty("intervals", out var list)
                ? list.EnumerateArray()
                    .Where(i => i.TryGetProperty("sum", out _))
                    .Select(i => i.GetProperty("sum").GetProperty("bits_per_second").GetDouble())
                    .ToArray()
                : [];
            return new IperfRun(sum.GetProperty("bits_per_second").GetDouble(), sum.GetProperty("bytes").GetInt64(), intervals);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new LabException($"iperf3 output not understood: {e.Message}", e);
        }
    }
}
