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
        try
        {
            using var json = JsonDocument.Parse(r.StdOut);
            var end = json.RootElement.GetProperty("end").GetProperty("sum_received");
            var intervals = json.RootElement.GetProperty("intervals").EnumerateArray()
                .Select(i => i.GetProperty("sum").GetProperty("bits_per_second").GetDouble())
                .ToArray();
            return new IperfRun(end.GetProperty("bits_per_second").GetDouble(), end.GetProperty("bytes").GetInt64(), intervals);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new LabException($"iperf3 output not understood: {e.Message}", e);
        }
    }
}
