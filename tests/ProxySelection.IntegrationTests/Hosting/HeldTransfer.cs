using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Hosting;

/// <summary>
/// A proxy (proxysel run --config) holding a rate-limited MPTCP download of <see cref="Size"/> bytes from nginx, for the
/// tests of what signals do to held connections (drain, graceful stop, reload). small.bin is there too, for a
/// connection made while the proxy drains or after it reloads.
/// </summary>
internal sealed class HeldTransfer : IAsyncDisposable
{
    public const int Size = 16 * 1024 * 1024;
    private const int SmallSize = 16 * 1024;

    private Task<CommandResult>? _transfer;
    private TimeSpan _transferTimeout;

    private HeldTransfer(ProxyLab lab, string sha, string smallSha)
    {
        Lab = lab;
        Sha = sha;
        SmallSha = smallSha;
    }

    public ProxyLab Lab { get; }

    /// <summary>SHA-256 of file.bin, the held download.</summary>
    public string Sha { get; }

    /// <summary>SHA-256 of small.bin.</summary>
    public string SmallSha { get; }

    public string ConfigPath => Path.Combine(Lab.Directory, "proxysel.json");

    /// <summary>Where the held download is written.</summary>
    public string Output => Path.Combine(Lab.Directory, "download.bin");

    public LabProcess Proxy { get; private set; } = null!;

    /// <summary>The lab with both files behind nginx; no proxy yet (set the lab up further, then <see cref="StartAsync"/>).</summary>
    public static async Task<HeldTransfer> PrepareAsync()
    {
        var lab = await ProxyLab.StartAsync();
        try
        {
            var held = new HeldTransfer(lab, lab.WriteFile("file.bin", Size), lab.WriteFile("small.bin", SmallSize));
            await lab.StartNginxAsync();
            return held;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Starts the proxy with <paramref name="proxySection"/> as its "Proxy" configuration, then the download at
    /// <paramref name="rate"/> (curl's --limit-rate), and returns once the proxy holds it.
    /// </summary>
    public async Task StartAsync(string proxySection, string rate, TimeSpan transferTimeout)
    {
        await File.WriteAllTextAsync(ConfigPath, $$"""{ "Proxy": {{proxySection}} }""");
        Proxy = await ProxyLab.StartProxysel(Lab.Topology.Proxy, "--config", ConfigPath).WaitRunningAsync();
        _transferTimeout = transferTimeout;
        _transfer = Lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, Output, transferTimeout, "--limit-rate", rate);
        await ProxyLab.WaitForLineAsync(Proxy, "accepted ", "token=");
    }

    /// <summary>Sends <paramref name="signal"/> to the proxy and returns its first output line starting with <paramref name="prefix"/> and containing <paramref name="text"/> from then on.</summary>
    public async Task<string> SignalAsync(int signal, string prefix, string text)
    {
        Assert.That(Proxy.Signal(signal), Is.True, $"signal {signal} sent");
        return await ProxyLab.WaitForLineAsync(Proxy, prefix, text);
    }

    /// <summary>Downloads small.bin over MPTCP (to small.out); returns curl's result and the SHA-256 of what arrived.</summary>
    public async Task<(CommandResult Curl, string Sha)> FetchSmallAsync()
    {
        var output = Path.Combine(Lab.Directory, "small.out");
        var curl = await Lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, output);
        return (curl, File.Exists(output) ? ProxyLab.Sha256Of(output) : "");
    }

    /// <summary>Whether the held download has ended (false while the proxy still relays it).</summary>
    public bool TransferCompleted => _transfer?.IsCompleted ?? false;

    /// <summary>curl's result for the held download, waited for with a margin over its own limit.</summary>
    public Task<CommandResult> TransferAsync() =>
        (_transfer ?? throw new InvalidOperationException("no transfer started")).WaitAsync(_transferTimeout + TimeSpan.FromSeconds(10));

    /// <summary>Waits for the proxy to exit, prints its output, and returns the exit code and what iptables-save shows after.</summary>
    public async Task<(int Exit, string Rules)> WaitForExitAsync(TimeSpan timeout)
    {
        var exit = await Proxy.WaitForExitAsync(timeout);
        TestContext.Progress.WriteLine(Proxy.Output);
        return (exit, await RulesAsync());
    }

    /// <summary>The proxy namespace's iptables-save output.</summary>
    public Task<string> RulesAsync() => Lab.Topology.Proxy.CheckAsync("iptables-save", [], ProxyLab.Timeout);

    public ValueTask DisposeAsync() => Lab.DisposeAsync();
}

internal static class ProxyProcessExtensions
{
    public static async Task<LabProcess> WaitRunningAsync(this LabProcess process)
    {
        try
        {
            await process.WaitForOutputAsync("proxysel: running", ProxyLab.Timeout);
        }
        catch
        {
            TestContext.Progress.WriteLine(process.Output);
            await process.DisposeAsync();
            throw;
        }

        return process;
    }
}
