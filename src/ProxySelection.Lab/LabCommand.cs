using System.Diagnostics;

namespace ProxySelection.Lab;

/// <summary>Runs a short command to completion with captured output and a hard timeout.</summary>
public static class LabCommand
{
    /// <summary>Default bound for one lab command (ip, tc, sysctl, iptables are all sub-second).</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Runs <paramref name="file"/> with <paramref name="args"/>. A command still running after
    /// <paramref name="timeout"/> is killed (by its own pid and its descendants) and <see cref="LabException"/> is thrown.
    /// A non-zero exit is returned, not thrown: call <see cref="CommandResult.EnsureSuccess"/>.
    /// </summary>
    public static async Task<CommandResult> RunAsync(
        string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null,
        CancellationToken cancellationToken = default)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        var text = Describe(file, psi.ArgumentList);
        using var process = new Process { StartInfo = psi };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new LabException($"cannot start '{text}': {e.Message}", e);
        }

        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin).ConfigureAwait(false);
            process.StandardInput.Close();
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout ?? DefaultTimeout);
        try
        {
            await process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            KillQuietly(process);
            if (cancellationToken.IsCancellationRequested)
            {
                throw;
            }

            throw new LabException($"'{text}' did not finish within {timeout ?? DefaultTimeout}");
        }

        return new CommandResult(text, process.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
    }

    /// <summary>Runs a command and throws <see cref="LabException"/> unless it exits 0; returns its stdout.</summary>
    public static async Task<string> CheckAsync(string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null,
        CancellationToken cancellationToken = default)
    {
        var r = await RunAsync(file, args, timeout, stdin, cancellationToken).ConfigureAwait(false);
        return r.EnsureSuccess().StdOut;
    }

    internal static string Describe(string file, IEnumerable<string> args) =>
        string.Join(' ', new[] { file }.Concat(args.Select(a => a.Contains(' ', StringComparison.Ordinal) ? $"'{a}'" : a)));

    private static void KillQuietly(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(2000);
        }
        catch (InvalidOperationException)
        {
            // Already exited between the timeout and the kill.
        }
    }
}
