namespace ProxySelection.Lab;

/// <summary>
/// A tcpdump capture running inside a namespace, writing a pcap file packet by packet (<c>-U --immediate-mode</c>).
/// <see cref="StopAsync"/> ends it (SIGINT, so tcpdump flushes) and returns the packets.
/// </summary>
public sealed class PacketCapture : IAsyncDisposable
{
    private readonly LabProcess process;

    private PacketCapture(LabProcess process, string path, string device)
    {
        this.process = process;
        PcapPath = path;
        Device = device;
    }

    public string PcapPath { get; }

    public string Device { get; }

    internal static async Task<PacketCapture> StartAsync(NetNamespace ns, string device, string pcapPath, string? filter,
        TimeSpan readyTimeout, CancellationToken cancellationToken)
    {
        // -Z root: tcpdump otherwise drops to its own user after opening the file, which then cannot be reopened.
        List<string> args = ["-i", device, "-n", "-U", "--immediate-mode", "-s", "0", "-Z", "root", "-w", pcapPath];
        if (!string.IsNullOrWhiteSpace(filter))
        {
            args.Add(filter);
        }

        var process = ns.StartProcess("tcpdump", args);
        var capture = new PacketCapture(process, pcapPath, device);
        try
        {
            // tcpdump prints this once the capture handle is active: packets after it are recorded.
            await process.WaitForOutputAsync("listening on", readyTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await capture.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return capture;
    }

    /// <summary>
    /// Stops tcpdump and reads what it wrote. Safe to call more than once. First waits (at most 3 s) until the file has
    /// not grown for <paramref name="quietPeriod"/> (default 200 ms): on SIGINT tcpdump exits without writing packets
    /// the kernel has already handed it but it has not processed (measured: 7 of 18 written on a loaded machine).
    /// </summary>
    public async Task<IReadOnlyList<PcapPacket>> StopAsync(TimeSpan? quietPeriod = null)
    {
        var quiet = quietPeriod ?? TimeSpan.FromMilliseconds(200);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        var lastSize = -1L;
        var stableSince = waited.Elapsed;
        while (!process.HasExited && waited.Elapsed < TimeSpan.FromSeconds(3))
        {
            var size = File.Exists(PcapPath) ? new FileInfo(PcapPath).Length : 0;
            if (size != lastSize)
            {
                lastSize = size;
                stableSince = waited.Elapsed;
            }
            else if (waited.Elapsed - stableSince >= quiet)
            {
                break;
            }

            await Task.Delay(25).ConfigureAwait(false);
        }

        await process.StopAsync(TimeSpan.FromSeconds(5), LabNative.SigInt).ConfigureAwait(false);
        return File.Exists(PcapPath) ? PcapFile.Read(PcapPath) : [];
    }

    /// <summary>tcpdump's own messages (including its "N packets captured" summary after stop).</summary>
    public string Log => process.Output;

    public async ValueTask DisposeAsync() => await process.DisposeAsync().ConfigureAwait(false);
}
