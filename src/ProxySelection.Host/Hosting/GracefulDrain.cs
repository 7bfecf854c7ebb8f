namespace ProxySelection.Host.Hosting;

/// <summary>
/// The wait of a graceful stop: the engine has stopped claiming new flows (<see cref="ProxySelection.Engine.ProxyEngine.StopClaiming"/>),
/// held connections may finish. The engine's dispose then closes what is left and removes the rules.
/// </summary>
internal sealed class GracefulDrain(TimeProvider time)
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>Waits until <paramref name="held"/> reads 0 (true), or the deadline passes or <paramref name="abort"/> fires (false).</summary>
    public async Task<bool> WaitForHeldAsync(Func<int> held, TimeSpan deadline, CancellationToken abort)
    {
        ArgumentNullException.ThrowIfNull(held);
        var start = time.GetTimestamp();
        while (held() > 0)
        {
            if (abort.IsCancellationRequested || time.GetElapsedTime(start) >= deadline)
            {
                return false;
            }

            try
            {
                await Task.Delay(PollInterval, time, abort).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        return true;
    }
}
